"""Settings of the web console (``[console]`` in ``attestor.toml``, ``EDGEPROOF_CONSOLE__*``).

Sign-in is by OIDC (authorization code with PKCE) when ``oidc_client_id`` is set, with
the issuer, audience and JWKS of ``[auth]``; otherwise an operator pastes a bearer
token once and gets a session cookie. Sessions end after ``idle_seconds`` without a
request and ``max_seconds`` after sign-in, whichever comes first.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="serve the console at /ui")
    idle_seconds: int = Field(900, ge=10, le=86400, description="a session ends after this "
                              "long without a request")
    max_seconds: int = Field(8 * 3600, ge=60, le=7 * 86400, description="and this long "
                             "after sign-in in any case")
    oidc_client_id: str | None = Field(None, description="the console's OIDC client id "
                                       "(public client, PKCE): enables OIDC sign-in")
    oidc_authorization_url: str | None = Field(None, pattern=r"^https?://",
                                               description="the issuer's authorization "
                                               "endpoint")
    oidc_token_url: str | None = Field(None, pattern=r"^https?://",
                                       description="the issuer's token endpoint")
    oidc_scope: str = Field("openid profile", description="scopes asked for")
    public_url: str | None = Field(None, pattern=r"^https?://", description="the console's "
                                   "external base URL (the OIDC redirect URI is built from "
                                   "it; default: the request's own)")

    @property
    def oidc(self) -> bool:
        return bool(self.oidc_client_id and self.oidc_authorization_url
                    and self.oidc_token_url)
