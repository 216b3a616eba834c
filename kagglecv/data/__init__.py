"""Data: a competition as Kaggle ships it, read, checked and decoded once; folds; the batches training reads.

archive      safe unpacking of zip, 7z and tar archives, nested or in a folder
tables       CSVs read as text; the submission template
locate       where each image is: found by id below the folder that holds it
competition  the description of a competition, filled in from its files; each layout's reader
labels       tags or names, spelt one way; the task they make
pixels       images stored as pixel columns (Digit Recognizer)
images       decoding on every core, straight to disk (one decoder, also for predict and the kernel)
meta         data.meta_columns encoded on each fold's training rows only
prepare      the `prepare` rule: unpack, read, recognise, decode into the cache, meta.json
inspect      `kagglecv inspect`: what prepare would recognise, and the config line to change it
folds        the `folds` rule: k-fold assignment per task, once
demo         the embedded digits competition, laid out as Kaggle ships one
augment      augmentation presets (albumentations per image, or batched tensor ops on the device)
batches      batches from the memory-mapped cache, for training and prediction
"""
