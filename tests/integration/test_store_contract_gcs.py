"""The DataStore contract (tests/unit/test_store_contract.py) on GCSStore with a real GCS emulator.

The unit run checks GCSStore on an in-memory bucket; this checks that the bucket it was checked on
behaves like the emulator (gcp-storage-emulator, tests/services/gcs_emulator.py), through the real
client (gcloud-aio-storage), for everything the contract asks.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.integration.gcs_helpers import gcs_emulator_fixture, open_store, run  # noqa: F401 - fixture
from tests.services.gcs_emulator import GCSEmulator
from tests.unit.test_store_contract import CASES, GCS, Case, case_id, mark_breach

pytestmark = pytest.mark.services
#: GCS only (see tests/conftest.py).
STORES = ("gcs",)


@pytest.mark.parametrize("scenario", CASES, ids=case_id)
def test_contract_on_the_emulator(
    scenario: Case, gcs_emulator: GCSEmulator, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    mark_breach(request, GCS, scenario)

    async def main() -> None:
        async with open_store(gcs_emulator, spool_dir=str(tmp_path)) as store:
            await asyncio.wait_for(scenario(store, GCS), 60)

    run(main())
