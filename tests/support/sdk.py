"""The official SDK (``alibabacloud-tea-openapi``) as a signing oracle: the credential stub every
oracle test hands it."""

from __future__ import annotations

from alibabacloud_credentials.models import CredentialModel


class FakeSdkCredential:
    """What ``Config(credential=...)`` needs: ``get_credential()``. No provider name on purpose,
    so the SDK adds no ``x-acs-credentials-provider`` telemetry header."""

    def __init__(self, key_id: str, secret: str, token: str | None, sts: bool) -> None:
        self._model = CredentialModel(
            access_key_id=key_id,
            access_key_secret=secret,
            security_token=token if sts else None,
            type="sts" if sts else "access_key",
        )

    def get_credential(self) -> CredentialModel:
        return self._model
