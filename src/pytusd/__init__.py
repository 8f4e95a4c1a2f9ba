"""pytusd: resumable uploads (tus 1.0.0 and the IETF resumable upload draft) for Python."""

from pytusd.asgi import TusApp
from pytusd.config import Config
from pytusd.info import UploadInfo

__all__ = ["Config", "TusApp", "UploadInfo", "__version__"]

__version__ = "0.1.0"
