"""Prometheus metrics with tusd's names (``pytusd.metrics.prometheus``) and the recorder interface.

This package's own import is empty on purpose: the hooks runner and the serving layer import
:mod:`pytusd.metrics.recorder`, and the Prometheus side imports the hooks; importing either must
not pull in the other.
"""
