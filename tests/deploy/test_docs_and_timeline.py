"""What `make package` builds for the docs and the timeline: the API ships its assets, CloudFront keys by the cookie.

`make test` runs `make package` first; run it yourself before running this file alone.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from api import static
from api.auth import SESSION_COOKIE

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".serverless"
TEMPLATE = BUILD / "cloudformation-template-update-stack.json"
ALL_VIEWER_EXCEPT_HOST = "b689b0a8-53d0-40ab-baf2-68738e2966ac"

pytestmark = pytest.mark.skipif(not TEMPLATE.exists(), reason="run `make package` first (make test does)")


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())["Resources"]


def test_the_api_artifact_carries_the_docs_assets_byte_for_byte() -> None:
    artifact = BUILD / "api.zip"
    with zipfile.ZipFile(artifact) as z:
        names = set(z.namelist())
        for name in static.ASSETS:
            assert f"api/static/{name}" in names, name
            assert z.read(f"api/static/{name}") == (ROOT / "api/static" / name).read_bytes(), name
    # The assets (about 3 MB, 0.8 MB zipped) and nothing else big: no source maps.
    assert not [n for n in names if n.endswith(".map")]
    assert artifact.stat().st_size < 2 * 1024 * 1024


def test_cloudfront_keys_its_cache_by_the_api_key_header_and_the_session_cookie(resources: dict[str, Any]) -> None:
    config = resources["ApiCachePolicy"]["Properties"]["CachePolicyConfig"]
    keyed = config["ParametersInCacheKeyAndForwardedToOrigin"]
    assert keyed["HeadersConfig"]["Headers"] == ["X-API-Key"]
    # The cookie opens GETs as the header does: an answer for one browser must never be served to another.
    assert keyed["CookiesConfig"] == {"CookieBehavior": "whitelist", "Cookies": [SESSION_COOKIE]}
    # With no minimum TTL CloudFront honours the timeline's `no-store` and caches the assets as they say.
    assert config["MinTTL"] == 0 and config["DefaultTTL"] == 0


def test_pages_and_sign_in_reach_the_api(resources: dict[str, Any]) -> None:
    behaviour = resources["ApiDistribution"]["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]
    # One behaviour for everything but the webhook: /issues/*/timeline and /assets/* go to the API like /api/v1
    config = resources["ApiDistribution"]["Properties"]["DistributionConfig"]
    assert [b["PathPattern"] for b in config.get("CacheBehaviors", [])] == ["/webhook"]
    assert behaviour["TargetOriginId"] == "api"
    assert "POST" in behaviour["AllowedMethods"]  # the sign-in form
    assert behaviour["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST  # forwards the cookie
    assert behaviour["ViewerProtocolPolicy"] == "redirect-to-https"  # so the cookie is set Secure
