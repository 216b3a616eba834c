"""Inference: a trained ensemble's predictions; imports nothing of training.

models   a backbone entry's network: a timm name or the user's factory, heads, metadata fusion
tta      predictions with test-time augmentation (every prediction of the workflow goes through it)
predict  a finished run's ensemble on new images (`snakemake predict`, `kagglecv predict`, the kernel)
"""
