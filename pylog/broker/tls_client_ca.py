"""The certificate authorities a TLS listener names when it asks for a client
certificate.

A Java broker's CertificateRequest lists the subjects of its trust store's
certificates (JSSE takes them from the trust manager's accepted issuers; TLS
1.2 carries them in the message, TLS 1.3 in its certificate_authorities
extension). Clients choose their certificate by it: librdkafka sends none
when no listed subject issued its certificate or chain, so an untrusted
client meets `handshake_failure` for a missing certificate rather than an
`unknown_ca` for a foreign one. Python's ssl module has no call for this list
(OpenSSL's SSL_CTX_add_client_CA), so it is set here through ctypes on the
SSL_CTX of the SSLContext, in the OpenSSL library that _ssl is linked with.
"""
from __future__ import annotations

import ctypes
import logging
import re
import ssl

log = logging.getLogger(__name__)

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_lib = None


def _openssl():
    global _lib
    if _lib is None:
        import _ssl
        lib = ctypes.CDLL(_ssl.__file__)   # dlsym on it also finds libssl's and libcrypto's symbols
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.d2i_X509.restype = ctypes.c_void_p
        lib.d2i_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
        lib.X509_free.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_add_client_CA.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.SSL_CTX_get_client_CA_list.restype = ctypes.c_void_p
        lib.SSL_CTX_get_client_CA_list.argtypes = [ctypes.c_void_p]
        lib.OPENSSL_sk_num.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


def _ssl_ctx(ctx: ssl.SSLContext, lib) -> int | None:
    """The SSL_CTX pointer of ctx: CPython keeps it right after the object
    header. Checked against the options both sides report, so a different
    layout is noticed instead of written into."""
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr or lib.SSL_CTX_get_options(ptr) != int(ctx.options):
        return None
    return ptr


def der_certificates(pem: bytes) -> list[bytes]:
    return [ssl.PEM_cert_to_DER_cert(m.group().decode("ascii")) for m in _PEM_CERT.finditer(pem)]


def name_trusted_issuers(ctx: ssl.SSLContext, certificates: list[bytes], listener: str) -> bool:
    """Make ctx's certificate requests list the subjects of certificates
    (DER). False, with a warning, when this Python's ssl cannot be reached."""
    try:
        lib = _openssl()
        ptr = _ssl_ctx(ctx, lib)
    except (OSError, AttributeError) as e:
        lib, ptr, why = None, None, str(e)
    else:
        why = "unexpected SSLContext layout"
    if ptr is None:
        log.warning("listener %s: the certificate requests will name no certificate authorities (%s); "
                    "clients choose their certificate without them", listener, why)
        return False
    for der in certificates:
        buf = ctypes.c_char_p(der)
        x509 = lib.d2i_X509(None, ctypes.byref(buf), len(der))
        if not x509:
            continue
        try:
            lib.SSL_CTX_add_client_CA(ptr, x509)   # copies the subject name
        finally:
            lib.X509_free(x509)
    return True

