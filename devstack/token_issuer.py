"""Google's token issuer, locally: an RSA key, its public certificates on loopback, ID tokens.

In the cloud, Google mints the OIDC ID tokens that Pub/Sub push, Cloud Tasks
and Cloud Scheduler send for a service account and an audience, and
publishes the keys that verify them (``https://www.googleapis.com/oauth2/v1/certs``
as x509 PEM by key id, ``.../oauth2/v3/certs`` as a JWKS). This stand-in
does the same with a key generated at start: the token carries the header
``{"alg": "RS256", "kid": ..., "typ": "JWT"}`` and the claims Google puts in
a service account's ID token (``iss``, ``aud``, ``azp``, ``sub``, ``email``,
``email_verified``, ``iat``, ``exp``: one hour), ``sub`` and ``azp`` being the
account's numeric unique id.

``mint_user`` makes the ID token Sign in with Google gives a web app for a
person (devstack/google_signin.py serves it to the local inbox).

``GET /token?audience=A&email=E`` plays ``gcloud auth print-identity-token
--impersonate-service-account=E --audiences=A``, so a developer can call the
local outbound API as a business system would. It answers on loopback only
and exists only in the local stack.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
from typing import Any, Mapping

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devstack.httpserver import Request, Response, StubHandler, StubServer

ISSUER = "https://accounts.google.com"
LIFETIME_SECONDS = 3600
CERTS_PATH = "/oauth2/v1/certs"
JWKS_PATH = "/oauth2/v3/certs"
# Google serves its certificates with hours of max-age; the verifiers cache them for it.
CACHE_CONTROL = "public, max-age=21600, must-revalidate, no-transform"


def unique_id(service_account_email: str) -> str:
    """A stable 21-digit number, the shape of a service account's unique id (the token's sub)."""
    return "1" + str(int(hashlib.sha256(service_account_email.encode()).hexdigest(), 16))[:20]


class TokenIssuer(StubServer):
    """Mints Google-shaped ID tokens; ``start()`` serves the certificates, ``mint`` needs no server."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(20)
        self.minted = 0

    @property
    def certs_url(self) -> str:
        """Where verifiers fetch the PEM certificates (AUTH_CERTS_URL in the local stack)."""
        return self.base_url + CERTS_PATH

    def mint(self, service_account_email: str, audience: str, lifetime_seconds: int = LIFETIME_SECONDS,
             now: float | None = None) -> str:
        """The ID token Google would mint for this service account and audience."""
        issued = int(time.time() if now is None else now)
        subject = unique_id(service_account_email)
        claims = {
            "aud": audience,
            "azp": subject,
            "email": service_account_email,
            "email_verified": True,
            "exp": issued + lifetime_seconds,
            "iat": issued,
            "iss": ISSUER,
            "sub": subject,
        }
        self.minted += 1
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    def mint_user(self, email: str, client_id: str, name: str = "", lifetime_seconds: int = LIFETIME_SECONDS,
                  now: float | None = None) -> str:
        """The ID token Sign in with Google gives a web app for a person: audience and ``azp`` the
        OAuth client, ``sub`` the account's id, the verified e-mail and the profile name."""
        issued = int(time.time() if now is None else now)
        subject = unique_id(email.lower())
        claims = {
            "iss": ISSUER,
            "azp": client_id,
            "aud": client_id,
            "sub": subject,
            "email": email,
            "email_verified": True,
            "nbf": issued - 60,
            "name": name or email.split("@")[0],
            "iat": issued,
            "exp": issued + lifetime_seconds,
            "jti": secrets.token_hex(20),
        }
        self.minted += 1
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    def verify(self, token: str, audiences: tuple[str, ...]) -> Mapping[str, Any]:
        """Check a token as Google's verifiers do (signature, key id, issuer, audience, time); raises jwt errors."""
        if jwt.get_unverified_header(token).get("kid") != self.kid:
            raise jwt.InvalidKeyError("unknown key id")
        return jwt.decode(
            token, self._key.public_key(), algorithms=["RS256"], audience=list(audiences),
            issuer=ISSUER, options={"require": ["exp", "iat", "aud", "iss"]}, leeway=0,
        )

    @property
    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return {"keys": [jwk]}

    def certificates(self) -> dict[str, str]:
        """The v1 form: key id to a self-signed x509 certificate in PEM."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local-token-issuer")])
        now = dt.datetime.now(dt.timezone.utc)
        certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .sign(self._key, hashes.SHA256())
        )
        return {self.kid: certificate.public_bytes(serialization.Encoding.PEM).decode()}

    def handle(self, request: Request, handler: StubHandler) -> Response:
        if request.method != "GET":
            return Response.json(405, {"error": "GET only"})
        if request.path == CERTS_PATH:
            return Response.json(200, self.certificates(), {"Cache-Control": CACHE_CONTROL})
        if request.path == JWKS_PATH:
            return Response.json(200, self.jwks, {"Cache-Control": CACHE_CONTROL})
        if request.path == "/token":
            audience = (request.query.get("audience") or [""])[0]
            email = (request.query.get("email") or [""])[0]
            if not audience or "@" not in email:
                return Response.json(400, {"error": "give ?audience=SERVICE_URL&email=SERVICE_ACCOUNT_EMAIL"})
            return Response(200, self.mint(email, audience).encode(), {"Content-Type": "text/plain"})
        return Response.json(404, {"error": f"no {request.path} here"})
