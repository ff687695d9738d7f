"""File input and output: raw files in, images, reports and DNGs out."""

from isp.io.dng import write_dng
from isp.io.images import atomic_path, read_image, write_json, write_npy, write_png8, write_tiff16, write_yaml
from isp.io.raw import read_raw

__all__ = ["read_raw", "read_image", "atomic_path", "write_png8", "write_tiff16", "write_json", "write_npy", "write_yaml", "write_dng"]
