"""Neural distance fields: hash-grid SDF (default) and SIREN (comparison)."""

from recon.fields.base import DistanceField
from recon.fields.hash_sdf import HashSDF, HashSDFConfig
from recon.fields.siren import SirenSDF, SirenSDFConfig

__all__ = ["DistanceField", "HashSDF", "HashSDFConfig", "SirenSDF", "SirenSDFConfig"]
