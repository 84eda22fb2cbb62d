"""Neural distance fields: hash-grid SDF (default) and SIREN (comparison)."""

from recon.fields.base import DistanceField
from recon.fields.hash_sdf import HashSDF, HashSDFConfig
from recon.fields.siren import SirenSDF, SirenSDFConfig
from recon.registry import register

FIELDS: dict[str, type] = {}
register(FIELDS, "hash_sdf")(HashSDFConfig)
register(FIELDS, "siren")(SirenSDFConfig)

__all__ = ["DistanceField", "FIELDS", "HashSDF", "HashSDFConfig", "SirenSDF", "SirenSDFConfig"]
