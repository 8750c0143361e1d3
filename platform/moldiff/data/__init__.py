"""Molecule records, Parquet datasets with manifests, readers, generators and graph batches."""
