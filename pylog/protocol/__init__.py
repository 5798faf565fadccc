"""The Kafka wire protocol: primitive types, generated message classes, frames.

    errors.py        ProtocolError, UnsupportedVersionError
    error_code.py    ErrorCode, ErrorTable: the shape of the error table
    error_codes.py   GENERATED: Kafka's error table (code, name, retriable, message)
    gen_errors.py    `python -m pylog.protocol.gen_errors`: Errors.java -> kafka_errors.json -> error_codes.py
    batch_layout.py  the record batch v2 header offsets (mirrors engine/batch.h)
    types.py         primitive encodings (ints, varints, strings, bytes, arrays, tagged fields)
    schema.py        base classes of the generated messages and their encode/decode entry points
    codegen.py       `python -m pylog.protocol.codegen`: Kafka's JSON schemas -> messages/
    messages/        GENERATED: one class per request/response/header; REQUESTS, RESPONSES;
                     one submodule per API, imported on the first use of its classes
    framing.py       size-prefixed frames with request/response headers

Nothing is imported here, so that using the primitives does not load the
generated module.
"""
