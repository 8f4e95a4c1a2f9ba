"""tuspyserver mounted in FastAPI at /files/, served by uvicorn (uvloop + httptools, 1 worker).

Run with the interpreter of bench/.cache/tuspyserver-venv:
    python tuspyserver_app.py <host> <port> <upload-dir>
"""

import sys

import uvicorn
from fastapi import FastAPI
from tuspyserver import create_tus_router


def main() -> None:
    host, port, files_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = FastAPI()
    app.include_router(create_tus_router(prefix="files", files_dir=files_dir))
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
