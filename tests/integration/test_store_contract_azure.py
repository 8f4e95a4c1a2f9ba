"""The DataStore contract (tests/unit/test_store_contract.py) on AzureStore with a real Azurite.

The unit run checks AzureStore on an in-memory container; this checks that the container it was
checked on behaves like a real one, for everything the contract asks. Small blocks (4 KiB) make
the cases span several blocks and merges.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.integration.azure_helpers import azurite_fixture, open_store  # noqa: F401 - fixture
from tests.services.azurite import AzuriteServer
from tests.unit.test_store_contract import AZURE, CASES, Case, case_id, mark_breach

pytestmark = pytest.mark.services
#: Azure only (see tests/conftest.py).
STORES = ("azure",)


@pytest.mark.parametrize("scenario", CASES, ids=case_id)
def test_contract_on_azurite(scenario: Case, azurite: AzuriteServer, request: pytest.FixtureRequest) -> None:
    mark_breach(request, AZURE, scenario)

    async def main() -> None:
        async with open_store(azurite, block_size=4096) as store:
            await asyncio.wait_for(scenario(store, AZURE), 60)

    asyncio.run(main())
