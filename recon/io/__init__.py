"""Reading user inputs: point clouds and posed image sets; validation, normalisation."""

from recon.io.archive import ArchiveLimits, safe_extract
from recon.io.dataset import MultiviewDataset, split_views, validate_dataset
from recon.io.errors import CODES, InputError, InputErrorCode, InputWarning
from recon.io.multiview import load_multiview, probe_multiview
from recon.io.normalize import Normalization, normalize, subsample
from recon.io.pointcloud import LOADERS, PointCloud, load_point_cloud, validate_point_cloud

__all__ = [
    "CODES",
    "LOADERS",
    "ArchiveLimits",
    "InputError",
    "InputErrorCode",
    "InputWarning",
    "MultiviewDataset",
    "Normalization",
    "PointCloud",
    "load_multiview",
    "load_point_cloud",
    "normalize",
    "probe_multiview",
    "safe_extract",
    "split_views",
    "subsample",
    "validate_dataset",
    "validate_point_cloud",
]
