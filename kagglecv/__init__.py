"""kagglecv: reproducible Kaggle image-classification runs.

The library never imports snakemake; `scripts/` are thin adapters that call into it.
"""

__version__ = "0.1.0"
