"""PLANT-ICD's neutral entry point: the `plant-icd` command (`plant_icd.cli`), which mounts the
training and service commands without importing either until one is used."""
