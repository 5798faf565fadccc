"""Request and response frames: int32 size, header, body.

    frame           = size:int32 header body      (size counts header + body)
    request header  v0: request_api_key int16, request_api_version int16, correlation_id int32
                    v1: v0 + client_id nullable string
                    v2: v1 + tagged fields
    response header v0: correlation_id int32
                    v1: v0 + tagged fields

A request uses header v2 when its version is flexible, else v1; only
ControlledShutdown v0 uses v0. client_id keeps its classic int16 length even in
v2, so any broker can read the header of a request it cannot parse.
A response uses header v1 when its version is flexible, else v0; ApiVersions
responses always use v0 (KIP-511), because a client reads the reply before it
knows which versions the broker speaks.

The `frame` taken by the decoders is what follows the size prefix. The
encoders return the whole frame, size prefix included. Reading the prefix and
limiting the frame size is the connection's job.

An ApiVersions request of a version this build does not know must still be
answered, never dropped: decode_request raises UnsupportedVersionError with
`.header` set, and the broker replies with
`encode_response(header.correlation_id, 18, 0, ApiVersionsResponse(error_code=Errors.UNSUPPORTED_VERSION, ...))`.
"""

from struct import error as StructError

from .errors import ProtocolError, UnsupportedVersionError
from .messages import REQUESTS, RESPONSES, RequestHeader, ResponseHeader
from .types import INT16, INT32

__all__ = [
    "request_header_version", "response_header_version",
    "decode_request_header", "decode_request", "encode_response",
    "encode_request", "response_correlation_id", "decode_response",
]

API_VERSIONS = 18
CONTROLLED_SHUTDOWN = 7

_BYTES_LIKE = (bytes, bytearray, memoryview)


def request_header_version(api_key, api_version):
    if api_key == CONTROLLED_SHUTDOWN and api_version == 0:
        return 0
    cls = REQUESTS.get(api_key)
    # An unknown api key gets v1: its fields are a prefix of v2's, so the
    # correlation id can still be read to report the error.
    return 2 if cls is not None and cls.is_flexible(api_version) else 1


def response_header_version(api_key, api_version):
    if api_key == API_VERSIONS:
        return 0
    cls = RESPONSES.get(api_key)
    return 1 if cls is not None and cls.is_flexible(api_version) else 0


# Bytes left after a request's last field are ignored, as Kafka ignores them:
# its RequestContext.parseRequest hands the body to the generated reader,
# which reads the fields the version has and never looks at what remains
# (a field that claims more bytes than the frame holds is still an error).
# Clients rely on it: librdkafka (2.16 and before, its issue #5049) writes
# Metadata v9+'s null topic array ("all topics") as a 4-byte placeholder,
# read as a null array, false, false and no tagged fields, 3 bytes left over.
# The frame is already bounded by socket.request.max.bytes, so nothing read
# here grows with them.


def decode_request_header(frame):
    """Returns (RequestHeader, offset of the body)."""
    buf = memoryview(frame)
    try:
        api_key = INT16.unpack_from(buf, 0)[0]
        api_version = INT16.unpack_from(buf, 2)[0]
    except StructError:
        raise ProtocolError(f"request frame of {len(buf)} bytes has no header") from None
    version = request_header_version(api_key, api_version)
    return RequestHeader.decode_from(buf, 0, version)


def decode_request(frame):
    """Returns (RequestHeader, request object). Records in the body are
    slices of `frame`, not copies.

    Raises UnsupportedVersionError (with .header) for an unknown api key or
    version, ProtocolError (with .header once the header was read) for
    malformed bytes.
    """
    buf = memoryview(frame)
    header, pos = decode_request_header(buf)
    api_key, version = header.request_api_key, header.request_api_version
    cls = REQUESTS.get(api_key)
    if cls is None:
        raise UnsupportedVersionError(f"unknown api key {api_key}", header)
    lo, hi = cls.VALID_VERSIONS
    if not lo <= version <= hi:
        raise UnsupportedVersionError(
            f"{cls.__name__} v{version} is not supported (valid versions {lo}-{hi})", header)
    try:
        body, _end = cls.decode_from(buf, pos, version)
    except ProtocolError as e:
        e.header = header
        raise
    return header, body


def _frame(header_cls, header, header_version, body_cls, body, version):
    out = bytearray(4)  # size, patched below once known
    header_cls.encode_into(header, header_version, out)
    if isinstance(body, _BYTES_LIKE):  # an already encoded body
        out += body
    else:
        body_cls.encode_into(body, version, out)
    out[0:4] = INT32.pack(len(out) - 4)
    return bytes(out)


def encode_response(correlation_id, api_key, api_version, body):
    """The whole response frame, size prefix included. `body` is a response
    object of `api_key`, or bytes already encoded for `api_version`."""
    cls = RESPONSES.get(api_key)
    if cls is None:
        raise UnsupportedVersionError(f"unknown api key {api_key}")
    return _frame(ResponseHeader, ResponseHeader(correlation_id),
                  response_header_version(api_key, api_version), cls, body, api_version)


def encode_request(correlation_id, api_key, api_version, body, client_id=None):
    """The whole request frame, size prefix included (the client side)."""
    cls = REQUESTS.get(api_key)
    if cls is None:
        raise UnsupportedVersionError(f"unknown api key {api_key}")
    header = RequestHeader(api_key, api_version, correlation_id, client_id)
    return _frame(RequestHeader, header, request_header_version(api_key, api_version),
                  cls, body, api_version)


def response_correlation_id(frame):
    """The correlation id of a response frame, to find the request it
    answers (and so its api key and version) before decoding it."""
    try:
        return INT32.unpack_from(frame, 0)[0]
    except StructError:
        raise ProtocolError(f"response frame of {len(frame)} bytes has no header") from None


def decode_response(frame, api_key, api_version):
    """Returns (ResponseHeader, response object) (the client side)."""
    cls = RESPONSES.get(api_key)
    if cls is None:
        raise UnsupportedVersionError(f"unknown api key {api_key}")
    buf = memoryview(frame)
    header, pos = ResponseHeader.decode_from(buf, 0, response_header_version(api_key, api_version))
    body, end = cls.decode_from(buf, pos, api_version)
    if end != len(buf):
        raise ProtocolError(
            f"{cls.__name__} v{api_version}: {len(buf) - end} trailing byte(s) after offset {end}")
    return header, body
