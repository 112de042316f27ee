"""python -m services.migrate: create the database and every table the services need."""

from __future__ import annotations

import sys

from services.common.config import ServiceSettings
from services.migrate import migrate


def main() -> int:
    settings = ServiceSettings()
    deployment = migrate(
        settings.database_url, partitions=settings.partitions, placement=settings.placement
    )
    print(
        "migrated",
        settings.database_url.rsplit("@", 1)[-1],
        f"({deployment.partitions} partition{'s' * (deployment.partitions != 1)})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
