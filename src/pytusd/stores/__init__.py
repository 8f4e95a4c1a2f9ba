"""Stores: where uploads live. ``base`` holds the contract; one module per backend."""

from pytusd.stores.base import DataStore, StoreError, UploadExists, UploadNotFound

__all__ = ["DataStore", "StoreError", "UploadExists", "UploadNotFound"]
