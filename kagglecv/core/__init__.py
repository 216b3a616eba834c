"""What every wing shares, below all of them: no module here imports another wing.

errors    InputError: bad input, one line naming the file, column, value or setting and what to do
files     atomic, durable writes (temp file, then rename); tables read as written
secrets   credentials redacted from everything printed, logged or recorded
layout    every path under results/<competition>/, and the files of each folder, named once
results   one reader per results file (meta.json, scores.json, a model folder's records), each a dataclass
tasks     the task kinds (binary ... ordinal): targets, head width, activation, loss scale; tags as text
precision what a device can train in (torch-free: the config's checks and the job share it)
devices   a job's device, precision, memory format and rank (shared by training and inference)
gpus      GPU leases for jobs that run side by side
"""
