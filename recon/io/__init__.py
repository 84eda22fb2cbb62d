"""Reading user point clouds: format loaders, validation, normalisation to the unit cube."""

from recon.io.errors import CODES, InputError, InputWarning
from recon.io.normalize import Normalization, normalize, subsample
from recon.io.pointcloud import LOADERS, PointCloud, load_point_cloud, validate_point_cloud

__all__ = [
    "CODES",
    "LOADERS",
    "InputError",
    "InputWarning",
    "Normalization",
    "PointCloud",
    "load_point_cloud",
    "normalize",
    "subsample",
    "validate_point_cloud",
]
