"""Training: one (member, fold) job, and the stages that teach later members.

train        the `train` rule: `run` builds a session, fits it, writes the fold's outputs
session      everything a job trains with, built in the order that fixes its random draws
fold         the job's rows of the cache, targets, metadata, and the rows a teacher adds
loop         one epoch, and the loss each task trains with
schedule     one-cycle per phase, fine_tune's phases, progressive resizing's stages
budget       train.time_budget: epochs planned, and planned again, to fit the seconds
averaging    the final weights: averaged over the last epochs, batch norm recomputed
resume       restarting a killed job from its last complete epoch, byte-identical
distributed  one job on several devices (DistributedDataParallel)
lr_finder    the `lr_find` rule: fastai's LR range test; train.lr: auto
teachers     the `pseudo_labels` and `distill_targets` rules: what later members learn from
"""
