"""The model lifecycle as typed use cases: train -> register -> promote -> retrain -> relabel.

    registry.py  the only code that joins bundle directories and the ``models`` table
    train.py     TrainOptions (every default written once) and train / train_and_register
    evaluate.py  which papers to score, and a registered version's metrics on them
    retrain.py   one challenger round through the promotion gate
    relabel.py   send stored papers through the stream again

No argparse and no print here: ``cli/`` parses and prints, tests and notebooks call these.
May import core, db, broker, models, training and ingest.snapshot; nothing imports it but
``cli/`` (and bench/).
"""
