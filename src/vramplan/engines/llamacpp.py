VERSIONS = ("0",)
DEFAULT_VERSION = "0"

def plan(**kw):
    raise NotImplementedError
