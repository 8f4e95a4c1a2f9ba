"""The DataStore contract (tests/unit/test_store_contract.py) on S3Store with a real Swift.

The unit run checks S3Store on an in-memory bucket; this checks that the bucket it was checked on
behaves like a real one, for everything the contract asks.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.integration.s3_helpers import (
    open_store,
    run,
    s3_env_fixture,  # noqa: F401 - fixture
    swift_fixture,  # noqa: F401 - fixture
)
from tests.services.swift import SwiftS3Server
from tests.unit.test_store_contract import CASES, S3, Case, case_id, mark_breach

pytestmark = pytest.mark.services
#: S3 only (see tests/conftest.py).
STORES = ("s3",)


@pytest.mark.parametrize("scenario", CASES, ids=case_id)
def test_contract_on_swift(scenario: Case, s3_env: SwiftS3Server, request: pytest.FixtureRequest) -> None:
    mark_breach(request, S3, scenario)

    async def main() -> None:
        async with open_store(s3_env) as store:
            await asyncio.wait_for(scenario(store, S3), 60)

    run(main())
