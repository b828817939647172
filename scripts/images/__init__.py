"""Helpers of scripts/build_images.py (`make image`); see docs/images.md."""
