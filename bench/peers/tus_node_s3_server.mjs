// @tus/server with @tus/s3-store, serving /files/ — started by bench/s3.py.
// Usage: node s3-server.mjs <host> <port> <bucket> <endpoint>
// Credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
// Objects are keyed by the upload ID (the last segment of the Location), plus <id>.info and <id>.part.
import { Server } from "@tus/server";
import { S3Store } from "@tus/s3-store";

const [host, port, bucket, endpoint] = process.argv.slice(2);
const datastore = new S3Store({
  // 8 MiB: the store's default, stated so a change of default does not change the benchmark;
  // also boto3's multipart_chunksize there and the size of the chunked workload's PATCHes.
  partSize: 8 * 1024 * 1024,
  s3ClientConfig: {
    bucket,
    endpoint,
    region: process.env.AWS_REGION,
    forcePathStyle: true, // Swift: no wildcard DNS for virtual-hosted buckets
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID,
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
    },
    // The SDK's default (WHEN_SUPPORTED) sends streamed bodies as aws-chunked with a CRC32 trailer,
    // which Swift's s3api refuses ("using aws-chunked is not supported").
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  },
});
const server = new Server({ path: "/files", datastore });
server.listen({ host, port: Number(port) }, () => console.log(`tus-node-s3 listening on ${host}:${port}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
