"""`python -m zyrak8s_api`: serve the API with uvicorn on ZYRA_HOST:ZYRA_PORT (127.0.0.1:8000)."""

from __future__ import annotations

import uvicorn

from zyrak8s_core.settings import get_settings


def main() -> None:
    settings = get_settings()
    settings.require_auth_configured()
    uvicorn.run(
        "zyrak8s_api.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
