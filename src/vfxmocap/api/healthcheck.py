"""`python -m vfxmocap.api.healthcheck`: exit 0 when this machine's API answers
`/api/healthz`, 1 otherwise. The containers' health check: it needs no curl in the image,
and it sends `VFX_API_TOKEN`, which every route (healthz too) requires when set."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from vfxmocap.core.config import get_settings


def healthy(timeout_s: float = 5.0) -> bool:
    """Ask the API on 127.0.0.1 at VFX_PORT, with the token when one is set."""
    settings = get_settings()
    request = urllib.request.Request(f"http://127.0.0.1:{settings.port}/api/healthz")
    if settings.api_token:
        request.add_header("Authorization", f"Bearer {settings.api_token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError) as exc:  # refused, timed out, 401/5xx: unhealthy
        print(f"unhealthy: {exc}", file=sys.stderr)
        return False


if __name__ == "__main__":
    sys.exit(0 if healthy() else 1)
