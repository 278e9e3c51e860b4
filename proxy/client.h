/* Client connections, as the context (ctx.c) drives them: closing and draining them all. */
#ifndef LBP_CLIENT_H
#define LBP_CLIENT_H

#include "px.h"

/* Closes every client connection at once (px_ctx_close). */
void px__client_close_all(struct px_ctx *ctx);

/* Applies ctx->draining to every client connection (px_ctx_drain). */
void px__client_drain_all(struct px_ctx *ctx);

/* Marks the connections to give back for px_ctx_shed; returns how many. */
unsigned px__client_shed(struct px_ctx *ctx, unsigned permille);

#endif
