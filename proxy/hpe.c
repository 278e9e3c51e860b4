/* llhttp's error codes in words, for the error log and the admin API's 400 answers. */
#include "http_head.h"

#include <llhttp.h>

#define E(code, text) [code] = text " (" #code ")"

static const char *const texts[] = {
    E(HPE_INTERNAL, "the parser failed inside"),
    E(HPE_STRICT, "a byte only a lenient parser takes"),
    E(HPE_CR_EXPECTED, "a line does not end in CRLF"),
    E(HPE_LF_EXPECTED, "a CR is not followed by LF"),
    E(HPE_UNEXPECTED_CONTENT_LENGTH, "Content-Length together with Transfer-Encoding"),
    E(HPE_UNEXPECTED_SPACE, "a space where none may be (in a header name, before its colon)"),
    E(HPE_CLOSED_CONNECTION, "bytes after a message that closes the connection"),
    E(HPE_INVALID_METHOD, "not an HTTP method"),
    E(HPE_INVALID_URL, "a malformed request target"),
    E(HPE_INVALID_CONSTANT, "not HTTP/1.x where the protocol name belongs"),
    E(HPE_INVALID_VERSION, "an HTTP version other than 1.0 and 1.1"),
    E(HPE_INVALID_HEADER_TOKEN, "a header name with a byte a token may not hold"),
    E(HPE_INVALID_CONTENT_LENGTH, "a Content-Length that is not one number"),
    E(HPE_INVALID_CHUNK_SIZE, "bad chunked framing (a size that is not hex, no CRLF after data)"),
    E(HPE_INVALID_STATUS, "a status code that is not three digits"),
    E(HPE_INVALID_EOF_STATE, "the connection closed in the middle of a message"),
    E(HPE_INVALID_TRANSFER_ENCODING, "a Transfer-Encoding whose last coding is not chunked"),
    E(HPE_CB_MESSAGE_BEGIN, "refused at the start of a message"),
    E(HPE_CB_HEADERS_COMPLETE, "a head lbproxy refuses (a header repeated or too many)"),
    E(HPE_CB_MESSAGE_COMPLETE, "refused at the end of a message"),
    E(HPE_CB_CHUNK_HEADER, "a chunk over the body limit"),
    E(HPE_CB_CHUNK_COMPLETE, "refused after a chunk"),
    E(HPE_PAUSED, "paused"),
    E(HPE_PAUSED_UPGRADE, "paused for an upgrade"),
    E(HPE_USER, "over one of lbproxy's limits"),
    E(HPE_CB_URL_COMPLETE, "a request target lbproxy refuses"),
    E(HPE_CB_STATUS_COMPLETE, "a status line lbproxy refuses"),
    E(HPE_CB_HEADER_FIELD_COMPLETE, "a header name lbproxy refuses"),
    E(HPE_CB_HEADER_VALUE_COMPLETE, "a header value lbproxy refuses"),
};

const char *px_hpe_why(int err) {
  if (err > 0 && (unsigned)err < sizeof(texts) / sizeof(texts[0]) && texts[err] != NULL)
    return texts[err];
  return "a message llhttp cannot parse";
}
