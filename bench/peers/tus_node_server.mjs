// @tus/server with FileStore, serving /files/ — started by bench/servers.py.
// Usage: node server.mjs <host> <port> <upload-dir>
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [host, port, directory] = process.argv.slice(2);
const server = new Server({ path: "/files", datastore: new FileStore({ directory }) });
server.listen({ host, port: Number(port) }, () => console.log(`tus-node listening on ${host}:${port}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
