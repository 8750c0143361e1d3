"""Reference potentials and engines that make and judge the data."""
