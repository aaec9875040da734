"""Secret stores by Dapr type name."""

from .base import Secret, SecretError, SecretNotFoundError, SecretStore, SecretStoreType
from .env import EnvSecretStore
from .file import FileSecretStore

SECRET_STORE_TYPES: dict[str, SecretStoreType] = {
    "secretstores.local.env": EnvSecretStore,
    "secretstores.local.file": FileSecretStore,
}

__all__ = [
    "SECRET_STORE_TYPES",
    "EnvSecretStore",
    "FileSecretStore",
    "Secret",
    "SecretError",
    "SecretNotFoundError",
    "SecretStore",
    "SecretStoreType",
]
