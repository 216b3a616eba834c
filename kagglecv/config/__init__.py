"""The configuration: one schema (schemas/config.schema.yaml) holds every key, its description and its default.

  schema     the schema, its defaults (`default_of` for the settings dataclasses), layering, validation
  members    each backbone entry's settings, the members each stage trains, input and cache sides
  resources  threads, memory, time and workers a training job asks its scheduler for
  train      TrainConfig: one training job's settings, what training and inference read; the checks of them a job makes
  data       DataConfig: how a competition is laid out and read (detection fills in what the config leaves open)
  checks     every check a job makes of its settings, made when the workflow reads its config (snakemake -n)
  factories  the files of a model factory of the user's (the file and what it imports from its folder), their hash

rules/common.smk asks these modules (the library never imports snakemake, so all of it is unit-tested).
"""
