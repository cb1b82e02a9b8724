"""The built-in report sections, one module each; importing this package registers them all
(`context.SECTIONS`)."""

from . import calibration, curves, gallery, gates, headline, omitted, ranking, raw, reliability, reliance, removal, setup, summary

__all__ = ["calibration", "curves", "gallery", "gates", "headline", "omitted", "ranking", "raw", "reliability", "reliance", "removal", "setup", "summary"]
