"""The cluster fixture itself: three pytusd instances on one bucket, reachable directly and through nginx.

Started without the Redis flags, so it runs before pytusd has them; the cluster tests proper
(locks shared in Redis) use the default ``cluster()``.
"""

from __future__ import annotations

import httpx
import pytest
from tests.integration.cluster_helpers import ClusterFactory, cluster_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.services
#: The cluster is on S3 whatever the pass: the Azure pass would only start a Swift for it again.
STORES = ("file", "s3")

TUS = {"Tus-Resumable": "1.0.0"}


def test_instances_share_the_bucket_behind_nginx(cluster: ClusterFactory) -> None:
    c = cluster(redis_url=None)
    assert len(c.instances) == 3
    assert len({instance.port for instance in c.instances}) == 3
    for instance in c.instances:
        options = httpx.options(instance.url, timeout=10)
        assert (options.status_code, options.headers.get("Tus-Version")) == (200, "1.0.0"), instance.name

    created = httpx.post(c.url, headers={**TUS, "Upload-Length": "11"}, timeout=30)
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    assert location.startswith(f"{c.proxy.url}/files/")  # nginx's host: --behind-proxy
    path = httpx.URL(location).path

    patched = httpx.patch(
        location,
        content=b"hello",
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        timeout=30,
    )
    assert patched.status_code == 204, patched.text
    for instance in c.instances:
        head = httpx.head(instance.base_url + path, headers=TUS, timeout=30)
        assert (head.status_code, head.headers.get("Upload-Offset")) == (200, "5"), instance.name
