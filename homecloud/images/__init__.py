"""Images: read-only datasets ``images/<name>`` that instances are forked from.

Built from a recipe (homecloud.images.recipes) or imported from a tarball or directory
(homecloud.images.importer); both fill ``images/.partial-<name>`` and publish it only when
complete (homecloud.images.publish).
"""
