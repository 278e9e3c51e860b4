# Turns a bench results dir (meta.txt, micro.csv, results.csv) into report.md and chart data.
#
# Called by bench/report.sh as
#   awk -F, -v meta=M -v micro=U -v results=C -v charts=DIR -f report.awk M U C > report.md
# Every figure in a table is the median over rounds of that (workload, target); errors are
# summed over rounds; connection and request shares are summed per-worker counts over rounds,
# heavy and light request counts too. POSIX awk only
# (Debian's default awk is mawk: no asort, no length(array)).

function median(key,    n, v, i, j, t) {
  if (!(key in vals))
    return ""
  n = split(vals[key], v, " ")
  for (i = 2; i <= n; i++) { # insertion sort: a handful of rounds
    t = v[i] + 0
    for (j = i - 1; j >= 1 && v[j] + 0 > t; j--)
      v[j + 1] = v[j]
    v[j + 1] = t
  }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}

function fmt(x, d) {
  return x == "" ? "–" : sprintf("%." d "f", x)
}

function ratio(a, b) {
  return (a == "" || b == "" || b + 0 == 0) ? "" : a / b
}

function rx(x) {
  return x == "" ? "–" : sprintf("%.2f×", x)
}

# One row of a target check: what, the measured value as text, and whether it passed.
function check(what, measured, ok) {
  printf "| %s | %s | %s |\n", what, measured, ok == "" ? "n/a" : (ok ? "PASS" : "**MISS**")
}

function med(w, t, m) {
  return median(w SUBSEP t SUBSEP m)
}

BEGIN {
  desc["ka-small"] = "keep-alive, small responses: `GET /` (2-byte body), 50 connections"
  desc["close-small"] = "a new connection per request: `GET /` with `Connection: close`, " \
                        "50 connections"
  desc["resp-64k"] = "64 KiB responses: `GET /bytes?n=65536`, keep-alive, 50 connections"
  desc["resp-1m"] = "1 MiB responses: `GET /bytes?n=1048576`, keep-alive, 20 connections"
  desc["slow-10ms"] = "slow backend: `GET /delay?ms=10` (10 ms per response), keep-alive, " \
                      "500 connections"
  desc["idle-10k"] = "10 000 idle keep-alive connections held open (lbp-idle-conns) while wrk " \
                     "measures keep-alive small responses with 50 more"
  desc["imbalanced"] = "imbalanced keep-alive (lbp-imbalance, not wrk): `GET /`, 50 connections " \
                       "opened one at a time heavy, light, heavy, ...; a heavy one makes 10× the " \
                       "requests of a light one. Per-worker request shares: the section below"
}

# The per-worker counts of a CSV column ("a;b" per row), summed over rounds into sums[w, t, k].
function add_split(name, sums,    n, a, i) {
  if (!(name in col) || $col[name] == "")
    return
  n = split($col[name], a, ";")
  nworkers = n
  for (i = 1; i <= n; i++)
    sums[w SUBSEP t SUBSEP i] += a[i]
}

# "a / b (J j, n=N)" from summed per-worker counts, "–" without any.
function split_cell(sums, w, t, jn,    s, k, cell) {
  s = 0
  for (k = 1; k <= nworkers; k++)
    s += sums[w SUBSEP t SUBSEP k]
  if (s == 0)
    return "–"
  for (k = 1; k <= nworkers; k++)
    cell = cell (k > 1 ? " / " : "") sprintf("%.1f", 100 * sums[w SUBSEP t SUBSEP k] / s)
  return cell " (J " fmt(jn, 3) ", n=" s ")"
}

FILENAME == meta {
  i = index($0, "=")
  m[substr($0, 1, i - 1)] = substr($0, i + 1)
  next
}

# The micro table's description of an lbp-micro mode (micro.csv's first column).
function micro_what(mode) {
  if (mode == "head")
    return "request head: llhttp parse + px_head rewrite + px_route (405-byte head, 3 routes)"
  if (mode == "handoff")
    return "fd handoff: ipc_send_small(IPC_CONN + fd) → decode → accept → close, " \
           "over a socketpair"
  if (mode == "handoff-batch")
    return "fd handoff, per connection of a batch of 32: 32 IPC_CONN (client address) + fds in " \
           "one ipc_send_frames_now → decode → accept → close"
  if (mode == "select")
    return "balancer: bal_select + bal_release, round_robin, 8 servers"
  return mode
}

FILENAME == micro {
  if (FNR > 1) {
    nmicro++
    micro_mode[nmicro] = $1
    micro_iters[nmicro] = $2
    micro_ipo[nmicro] = $4
  }
  next
}

FILENAME == results && FNR == 1 {
  for (i = 1; i <= NF; i++)
    col[$i] = i
  next
}

FILENAME == results {
  w = $col["workload"]
  t = $col["target"]
  nrows++
  split("rps mib_s p50_ms p99_ms p999_ms master_cpu_pct workers_cpu_pct cpu_us_per_req " \
        "max_rss_mib fds_per_conn jain idle_conns idle_bytes_per_conn other_cpu_pct " \
        "request_jain", names, " ")
  for (i = 1; i in names; i++)
    if ((names[i] in col) && $col[names[i]] != "")
      vals[w SUBSEP t SUBSEP names[i]] = vals[w SUBSEP t SUBSEP names[i]] " " $col[names[i]]
  errors[w SUBSEP t] += $col["socket_errors"] + $col["timeouts"] + $col["non2xx"]
  add_split("accepted", accepted)
  add_split("worker_requests", wrequests)
  if (("heavy_requests" in col) && $col["heavy_requests"] != "") {
    heavy[w SUBSEP t] += $col["heavy_requests"]
    light[w SUBSEP t] += $col["light_requests"]
  }
}

END {
  nt = split(m["targets"], T, " ")
  nw = split(m["workloads"], W, " ")
  ref = "lbproxy-handoff"

  printf "# lbproxy bench: %s on %s\n\n", m["date"], m["host"]
  printf "A **%s** run: %s round(s) of %d workloads × %d targets, interleaved (each " \
         "round runs every workload; within a workload the target order rotates by one per " \
         "round and reverses every other round). wrk (2 threads; for `imbalanced`, lbp-imbalance, one " \
         "thread) measures %s s per target after a %s s warm-up. Every " \
         "figure is the **median over rounds**; errors are summed over rounds.\n\n",
         m["mode"], m["rounds"], nw, nt, m["duration_s"], m["warmup_s"]
  printf "Machine: %s, %s CPUs, Linux %s, open-file limit %s. Versions: lbproxy %s (Release), " \
         "nginx %s, HAProxy %s, wrk %s, %s.\n\n", m["cpu"], m["cpus"], m["kernel"], m["nofile"],
         m["lbproxy_rev"], m["nginx"], m["haproxy"], m["wrk"], m["valgrind"]
  printf "Everything runs on this one machine (clients, proxies, backends share its CPUs), so " \
         "compare targets within a table rather than with numbers from elsewhere. The upstream " \
         "pool is two `lbp-backend` processes; `direct` is wrk straight at a third backend " \
         "started with `--procs 2` (the same backend CPU as the pool). Reproduce with " \
         "`make bench` (or `make bench QUICK=1`); raw data: `results.csv`, `raw/`, `logs/`; " \
         "how to read it: `bench/README.md`.\n\n"

  # ---- targets ----
  print "## Targets (lbproxy = dispatch handoff, the default)\n"
  print "| target | measured | result |"
  print "|---|---|---|"
  # The performance issue's targets (issue 12), in its order.
  a = med("close-small", ref, "cpu_us_per_req")
  b = med("close-small", "lbproxy-reuseport", "cpu_us_per_req")
  r = ratio(a, b)
  check("new connection per request: CPU µs/request ≤ 1.15× reuseport's",
        r == "" ? "–" : sprintf("%.1f vs %.1f µs (%.2f×)", a, b, r), r == "" ? "" : r <= 1.15)
  r = ratio(med("close-small", ref, "rps"), med("close-small", "nginx", "rps"))
  check("new connection per request: req/s ≥ 1.0× nginx", rx(r), r == "" ? "" : r >= 1)
  a = med("close-small", ref, "master_cpu_pct")
  check("new connection per request: master CPU < 15 % of a core",
        a == "" ? "–" : sprintf("%.1f %%", a), a == "" ? "" : a < 15)
  for (j = 1; j <= nw; j++) {
    a = med(W[j], ref, "p99_ms")
    b = med(W[j], "nginx", "p99_ms")
    r = ratio(a, b)
    cell = r == "" ? "–" : sprintf("%.2f ms vs %.2f ms (%.2f×)", a, b, r)
    check("p99 ≤ nginx's: " W[j], cell, r == "" ? "" : r <= 1)
  }
  for (j = 1; j <= nw; j++) {
    a = med(W[j], ref, "cpu_us_per_req")
    b = med(W[j], "nginx", "cpu_us_per_req")
    r = ratio(a, b)
    cell = r == "" ? "–" : sprintf("%.1f µs vs %.1f µs (%.2f×)", a, b, r)
    check("CPU µs/request ≤ 0.85× nginx's: " W[j], cell, r == "" ? "" : r <= 0.85)
  }
  r = ratio(med("ka-small", ref, "rps"), med("ka-small", "nginx", "rps"))
  check("keep-alive small ≥ 1.25× nginx req/s", rx(r), r == "" ? "" : r >= 1.25)
  r = ratio(med("resp-64k", ref, "rps"), med("resp-64k", "nginx", "rps"))
  check("64 KiB responses ≥ 1.3× nginx req/s", rx(r), r == "" ? "" : r >= 1.3)
  r = ratio(med("resp-1m", ref, "rps"), med("resp-1m", "nginx", "rps"))
  check("1 MiB responses ≥ 1.3× nginx req/s", rx(r), r == "" ? "" : r >= 1.3)
  r = ratio(med("resp-1m", "lbproxy-proxy", "rps"), med("resp-1m", ref, "rps"))
  check("dispatch proxy ≥ 0.8× handoff on 1 MiB responses", rx(r), r == "" ? "" : r >= 0.8)
  a = med("idle-10k", ref, "idle_bytes_per_conn")
  check("idle keep-alive connections ≤ 1.3 KiB each over baseline",
        a == "" ? "–" : sprintf("%.0f bytes (%.2f KiB) per connection", a, a / 1024),
        a == "" ? "" : a <= 1.3 * 1024)
  a = med("imbalanced", "lbproxy-handoff-least", "request_jain")
  b = med("imbalanced", ref, "request_jain")
  check("imbalanced: handoff-least (rebalancing) Jain's index over requests ≥ 0.95",
        a == "" ? "–" : sprintf("%.3f (handoff: %s)", a, fmt(b, 3)), a == "" ? "" : a >= 0.95)
  print ""

  # ---- which dispatch strategy ----
  print "## Which dispatch strategy? (req/s relative to the best lbproxy strategy per workload)\n"
  line = "| workload |"
  sep = "|---|"
  for (i = 1; i <= nt; i++)
    if (T[i] ~ /^lbproxy-/) {
      line = line " " substr(T[i], 9) " |"
      sep = sep "---:|"
    }
  print line
  print sep
  for (j = 1; j <= nw; j++) {
    best = 0
    for (i = 1; i <= nt; i++)
      if (T[i] ~ /^lbproxy-/ && med(W[j], T[i], "rps") + 0 > best)
        best = med(W[j], T[i], "rps") + 0
    line = "| " W[j] " |"
    for (i = 1; i <= nt; i++)
      if (T[i] ~ /^lbproxy-/) {
        v = med(W[j], T[i], "rps")
        cell = v == "" ? "–" : sprintf("%.0f (%.2f)", v, v / best)
        if (v != "" && v + 0 == best)
          cell = "**" cell "**"
        line = line " " cell " |"
      }
    print line
  }
  print ""

  # ---- one table per workload ----
  print "## Results per workload\n"
  print "Columns: req/s; ratios of req/s to nginx and to direct; MiB/s of responses; latency " \
        "percentiles (ms); errors (socket errors + timeouts + non-2xx/3xx, all rounds); CPU of " \
        "the master and of the workers in % of one core; CPU µs per request (all the target's " \
        "processes); max RSS (sum of per-process peaks, MiB); descriptors per client connection " \
        "over the idle baseline; other load: CPU used meanwhile by processes that are not part " \
        "of the bench (this machine is shared), in % of one core — a high value flags a noisy " \
        "measurement.\n"
  for (j = 1; j <= nw; j++) {
    w = W[j]
    idle = w ~ /^idle-/
    printf "### %s\n\n%s.\n\n", w, (w in desc) ? desc[w] : w
    printf "| target | req/s | × nginx | × direct | MiB/s | p50 | p99 | p99.9 | errors | " \
           "master CPU %% | workers CPU %% | CPU µs/req | max RSS MiB | fds/conn |%s " \
           "other load %% |\n", idle ? " idle conns | bytes/idle conn |" : ""
    printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|%s---:|\n",
           idle ? "---:|---:|" : ""
    for (i = 1; i <= nt; i++) {
      t = T[i]
      if (med(w, t, "rps") == "")
        continue
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s |", t,
             fmt(med(w, t, "rps"), 0), rx(ratio(med(w, t, "rps"), med(w, "nginx", "rps"))),
             rx(ratio(med(w, t, "rps"), med(w, "direct", "rps"))), fmt(med(w, t, "mib_s"), 1),
             fmt(med(w, t, "p50_ms"), 2), fmt(med(w, t, "p99_ms"), 2),
             fmt(med(w, t, "p999_ms"), 2), errors[w SUBSEP t], fmt(med(w, t, "master_cpu_pct"), 1),
             fmt(med(w, t, "workers_cpu_pct"), 1), fmt(med(w, t, "cpu_us_per_req"), 1),
             fmt(med(w, t, "max_rss_mib"), 1), fmt(med(w, t, "fds_per_conn"), 2)
      if (idle)
        printf " %s | %s |", fmt(med(w, t, "idle_conns"), 0),
               fmt(med(w, t, "idle_bytes_per_conn"), 0)
      # Per-process and machine-wide CPU are counted differently (ticks): near zero, noise.
      v = med(w, t, "other_cpu_pct")
      printf " %s |\n", fmt(v != "" && v < 0 ? 0 : v, 0)
      printf "%s %s %s\n", t, med(w, t, "rps"), med(w, t, "p99_ms") > (charts "/" w ".dat")
      if (idle && med(w, t, "idle_conns") != "" && med(w, t, "idle_conns") < m["idle_conns"] + 0)
        fewer = fewer (fewer == "" ? "" : ", ") t
    }
    close(charts "/" w ".dat")
    print ""
    if (idle && fewer != "")
      printf "Fewer idle connections for %s: with the open-file limit of %s, a process that " \
             "holds two descriptors per client (the master of dispatch proxy; HAProxy, by its " \
             "own maxconn accounting) cannot take %s. Bytes per idle connection stay " \
             "comparable.\n\n", fewer, m["nofile"], m["idle_conns"]
  }

  # ---- fairness ----
  print "## Connection share per worker (lbproxy)\n"
  print "Accepted connections per worker over the measured period (stats lines, summed over " \
        "rounds), as % of the total, and Jain's fairness index (Σx)²/(n·Σx²) (median over " \
        "rounds): 1.00 is a perfect split, 0.50 means one of two workers took everything. " \
        "Keep-alive workloads open few connections (about 50), so there a small imbalance is " \
        "a few connections; n is the number of connections counted. `imbalanced` counts its " \
        "connections from their set-up (before the warm-up), since they stay open throughout.\n"
  line = "| strategy |"
  sep = "|---|"
  for (j = 1; j <= nw; j++) {
    line = line " " W[j] " |"
    sep = sep "---|"
  }
  print line
  print sep
  for (i = 1; i <= nt; i++) {
    t = T[i]
    if (t !~ /^lbproxy-/)
      continue
    line = "| " t " |"
    for (j = 1; j <= nw; j++)
      line = line " " split_cell(accepted, W[j], t, med(W[j], t, "jain")) " |"
    print line
  }
  print ""

  # ---- request share (imbalanced) ----
  for (j = 1; j <= nw; j++)
    if (W[j] == "imbalanced")
      imbalance_section()

  # ---- micro ----
  print "## Hot path in instructions (callgrind)\n"
  print "`lbp-micro` under `valgrind --tool=callgrind`, counted only between " \
        "CALLGRIND_START/STOP_INSTRUMENTATION around the measured loop (after a warm-up), user " \
        "space only (the kernel's share of the sendmsg/recvmsg is not in it). Deterministic: " \
        "the same build gives the same count.\n"
  print "| operation | iterations | instructions/op |"
  print "|---|---:|---:|"
  for (i = 1; i <= nmicro; i++)
    printf "| %s | %d | %d |\n", micro_what(micro_mode[i]), micro_iters[i], micro_ipo[i]
  print ""
  print "## Charts\n"
  print "![req/s per target and workload](rps.svg)\n"
  print "![p99 latency per target and workload](p99.svg)"
}

# The imbalanced workload's own table: the per-worker request share (lbproxy's /stats) next to
# the connection share, the heavy:light request ratio lbp-imbalance kept, req/s and p99.
function imbalance_section(    i, t, w, lb, r) {
  w = "imbalanced"
  print "## Request share per worker (imbalanced workload)\n"
  print "lbp-imbalance opens 50 keep-alive connections one at a time (each has its first " \
        "response before the next connects), heavy, light, heavy, ...; a heavy connection " \
        "sends its next request as soon as it has a response, a light one only while the " \
        "heavy ones' average count is ≥ 10× its own. A dispatcher that deals connections to " \
        "two workers in turn thus gives one worker every heavy connection: about 10/11 " \
        "(90.9 %) of the requests while the connection split is even. Request share: " \
        "per-worker `requests` deltas from lbproxy's admin API (`/stats`) over the measured " \
        "period (nothing in flight at either end), summed over rounds, with Jain's index over " \
        "requests (median over rounds). nginx, HAProxy and direct expose no per-worker " \
        "split (–). heavy : light is the requests of heavy over light connections, as " \
        "lbp-imbalance counted them (10 : 1 when the rule held).\n"
  print "| target | req/s | p99 ms | heavy : light | request share per worker, % | " \
        "connection share per worker, % |"
  print "|---|---:|---:|---:|---|---|"
  for (i = 1; i <= nt; i++) {
    t = T[i]
    if (med(w, t, "rps") == "")
      continue
    lb = t ~ /^lbproxy-/
    r = light[w SUBSEP t] > 0 ? sprintf("%.1f : 1", heavy[w SUBSEP t] / light[w SUBSEP t]) : "–"
    printf "| %s | %s | %s | %s | %s | %s |\n", t, fmt(med(w, t, "rps"), 0),
           fmt(med(w, t, "p99_ms"), 2), r,
           lb ? split_cell(wrequests, w, t, med(w, t, "request_jain")) : "–",
           lb ? split_cell(accepted, w, t, med(w, t, "jain")) : "–"
  }
  print ""
}
