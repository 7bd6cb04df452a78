"""The API's vocabulary: what a row may say (media, classifications, a hash) and what the columns
are called.  Every stage that reads, checks, keys or sends a row takes these names from here.

The trap: the order of :data:`MEDIA` and :data:`CLASSIFICATIONS` is part of the de-duplication
keys (:mod:`.keys` codes each by its position), so a new value goes at the end, never between.
"""

from __future__ import annotations

MEDIA = ("video", "image", "audio")
#: The override endpoint's path segment for each media (``/api/{endpoint}/{hash}/override``).
ENDPOINTS = {"image": "classification", "video": "classification_video", "audio": "classification_audio"}
CLASSIFICATIONS = ("human", "artificial")
#: A valid hash, once normalised: a SHA-256 as 64 lowercase hex digits.
HASH_PATTERN = "^[0-9a-f]{64}$"
#: The input's column names unless told otherwise (a media column is optional).
HASH_COLUMN, CLASSIFICATION_COLUMN, MEDIA_COLUMN = "hash", "classification", "media"
