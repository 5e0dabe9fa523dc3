"""The one exception type a user should ever see from imgcls."""


class ImgclsError(Exception):
    """Bad input: the message names the key, file or image and what would be valid."""
