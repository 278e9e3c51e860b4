/* An intrusive doubly linked list: the one list helper of the data plane. */
#ifndef LBP_PX_LIST_H
#define LBP_PX_LIST_H

#include <stddef.h>

/* A list head and a list link are the same struct: a circular list whose head is a sentinel,
 * so insertion and removal never test for the ends. An unlinked element points to itself,
 * which makes removal idempotent and px_list_linked() free. */
struct px_list {
  struct px_list *prev, *next;
};

#define px_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void px_list_init(struct px_list *l) {
  l->prev = l->next = l;
}

static inline int px_list_empty(const struct px_list *l) {
  return l->next == l;
}

/* 1 if `e` is in a list (it was px_list_init'ed or removed otherwise). */
static inline int px_list_linked(const struct px_list *e) {
  return e->next != e;
}

static inline void px_list_insert_head(struct px_list *l, struct px_list *e) {
  e->next = l->next;
  e->prev = l;
  l->next->prev = e;
  l->next = e;
}

static inline void px_list_insert_tail(struct px_list *l, struct px_list *e) {
  e->prev = l->prev;
  e->next = l;
  l->prev->next = e;
  l->prev = e;
}

static inline void px_list_remove(struct px_list *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
  e->prev = e->next = e;
}

/* The first element, or NULL when the list is empty. */
static inline struct px_list *px_list_first(const struct px_list *l) {
  return l->next == l ? NULL : l->next;
}

#endif
