"""Hostile inputs shared by the tests of loading (checkpoints, CIFAR-10 files)."""

import os


class PlantedCommand:
    """Pickled, this object is a program: unpickling it runs ``touch marker``.  Tests
    check that the marker never appears."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
