"""tus-js-client through nginx to three pytusd instances on one S3 bucket, locks in Redis.

nginx balances round robin, so the client's requests (the creation, each chunk's PATCH, the
parallel partials and their final) land on different instances; the upload must come out byte
for byte on every instance. The cluster always runs on S3 (tests/integration/cluster_helpers.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from tests.integration.cluster_helpers import Cluster, ClusterFactory, cluster_fixture  # noqa: F401
from tests.interop.conftest import TusJs
from tests.interop.helpers import KIB, MIB, TUS, write_random_file

STORES = ("s3",)


def _stored_everywhere(cluster: Cluster, url: str, data: bytes) -> None:
    path = urlsplit(url).path
    for instance in cluster.instances:
        response = httpx.get(urljoin(instance.base_url, path), headers=TUS, timeout=30.0)
        assert response.status_code == 200, (instance.name, response.status_code)
        assert response.content == data, instance.name


def _patch_upstreams(cluster: Cluster) -> set[str]:
    log = cluster.proxy.access_log_path.read_text()
    return set(re.findall(r'"PATCH [^"]*" \d+ \d+ upstream=(\S+)', log))


def test_tusjs_uploads_through_nginx_across_instances(cluster: ClusterFactory, tusjs: TusJs, tmp_path: Path) -> None:
    c = cluster()
    path, data = write_random_file(tmp_path, 5 * MIB + 123, seed=21)
    result = tusjs({"endpoint": c.url, "file": str(path), "chunkSize": 512 * KIB, "metadata": {"filename": "a.bin"}})
    assert result["ok"], f"tus-js-client failed: {result['error']}\nstderr: {result['stderr']}"
    assert result["bytes"] == len(data)
    assert urlsplit(result["url"]).netloc == urlsplit(c.url).netloc  # --behind-proxy: nginx's address
    _stored_everywhere(c, result["url"], data)
    assert len(_patch_upstreams(c)) == 3, "nginx did not spread the PATCHes over the instances"


def test_tusjs_parallel_uploads_through_nginx(cluster: ClusterFactory, tusjs: TusJs, tmp_path: Path) -> None:
    c = cluster()
    path, data = write_random_file(tmp_path, 3 * MIB + 7, seed=22)
    config = {"endpoint": c.url, "file": str(path), "chunkSize": 256 * KIB, "options": {"parallelUploads": 3}}
    result = tusjs(config)
    assert result["ok"], f"tus-js-client failed: {result['error']}\nstderr: {result['stderr']}"
    assert len(result["partialUrls"]) == 3
    _stored_everywhere(c, result["url"], data)
