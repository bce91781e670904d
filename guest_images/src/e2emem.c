/*
 * e2emem: the suite's guest workload. Holds named anonymous regions and obeys
 * one command per line on stdin, answering one line on stdout ("ok ..." or
 * "err ..."), so the host can time each step without sleeps.
 *
 *   touch NAME MIB [nohuge]   map MIB and write every byte (huge pages unless nohuge)
 *   fill NAME MIB SEED [nohuge]  map MIB and write a checksummed pattern
 *   alloc NAME MIB            map MIB and fault it in writable without writing
 *                             (MADV_POPULATE_WRITE): what the kernel hands out, as is
 *   verify NAME               re-check the pattern: "ok pages=P bad=B"
 *   zerocheck NAME            count pages that are not all zero: "ok pages=P nonzero=N"
 *   punch NAME KEEP_KIB GAP_KIB   unmap GAP after every KEEP (fragments NAME)
 *   pfns NAME [KEEP_KIB GAP_KIB]  the guest PFNs backing NAME (or the parts punch would
 *                             unmap) in virtual-address order, the order munmap frees them:
 *                             "ok pages=P runs=R pt=T PFN+N[h] ..." (h: part of a THP), from
 *                             /proc/self/pagemap and /proc/kpageflags (needs root); T: the
 *                             PTE tables that unmap frees after the pages (see pt_freed)
 *   free NAME                 unmap the whole region, then fault in SETTLE_FAULTS pages per
 *                             node (see settle()): "ok ms=T faults=F [fnodes=A,B] node=N
 *                             pcp_us=U pcp=..." (fnodes: the nodes the faults were bound to,
 *                             one part each; N: this CPU's node; pcp_now: this CPU's per-cpu
 *                             lists read U us before the unmap; after a `sync` that saw a
 *                             run, sync_age_ms=A: its unmap ended A ms after the poll before)
 *   sync                      (6.12) wait up to SYNC_MS for vmstat_update's run on this CPU
 *                             (its decay step), so that the next is a second away and none
 *                             falls inside a release right after: "ok synced=S sync_ms=W
 *                             via=high|mlock|none" (S 1: seen; see decay_sync)
 *   cpu N                     pin this process to CPU N (sched_setaffinity): munmap then
 *                             frees on that CPU's per-cpu lists, which the model reads
 *   quit
 *
 * Built statically on the host (see harness/image.py), so it needs nothing in the guest.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAXR 64
#define PG 4096UL
/* After an unmap, this many new pages faulted in on the same CPU: 6.1 halves the CPU's pcp
 * free_factor at every allocation (rmqueue_pcplist), and a big free leaves it up to 5
 * (CONFIG_PCP_BATCH_SCALE_MAX), so three bring it to 0; while it is above 0 any order 1-3 free
 * there drains the CPU's lists whole (free_high), which the model cannot time. 6.12 halves
 * free_count instead, which a big free leaves up to batch << 5 plus a THP's 511 (2527 for batch
 * 63: it adds 1 << order while below batch << 5); six bring it under batch (39), and below
 * batch no free_high can drain there (free_unref_page_commit). */
#define SETTLE_FAULTS 6
#define SETTLE_LEN (16UL << 20)

/* ptemapped: every 2 MiB span of it is mapped through a PTE table (nohuge, or a punch split
 * its huge pages); else only spans where a page is not a THP's */
struct region { char name[32]; char *base; size_t len; uint64_t seed; int filled; int ptemapped; };
static struct region regs[MAXR];

/* Untouched pages to fault in after unmaps: one page per 2 MiB touched at start, so the
 * faults need no page-table page of their own. On a guest of several nodes the area is cut
 * into one part per online node, bound there (mbind MPOL_BIND), and each part takes
 * SETTLE_FAULTS faults: an allocation halves free_factor only on the lists it comes from, those
 * of its node's zone, and the unmap leaves it up on every node's lists of this CPU. */
#define MAXNODES 8
static char *settle_base;
static int settle_nodes[MAXNODES], settle_nr;       /* the nodes bound, one part each; 0: unbound */
static size_t settle_next[MAXNODES];

static int online_nodes(int *out)
{
	char buf[128];
	int fd = open("/sys/devices/system/node/online", O_RDONLY), n = 0;
	ssize_t got = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (got <= 0)
		return 0;
	buf[got] = 0;
	for (char *p = buf; *p && *p != '\n';) {     /* "0", "0-1", "0,2-3" */
		char *e;
		long a = strtol(p, &e, 10), b = a;
		if (e == p)
			break;
		if (*e == '-')
			b = strtol(e + 1, &e, 10);
		for (long i = a; i <= b && n < MAXNODES; i++)
			out[n++] = (int)i;
		p = *e == ',' ? e + 1 : e;
	}
	return n;
}

static void settle_init(void)
{
	settle_base = mmap(NULL, SETTLE_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (settle_base == MAP_FAILED) {
		settle_base = NULL;
		return;
	}
	madvise(settle_base, SETTLE_LEN, MADV_NOHUGEPAGE);
	int nodes[MAXNODES], n = online_nodes(nodes);
	size_t part = SETTLE_LEN / (n > 1 ? n : 1) & ~((2UL << 20) - 1);
	for (int i = 0; n > 1 && i < n && part; i++) {
		unsigned long mask = 1UL << nodes[i];
		if (syscall(SYS_mbind, settle_base + i * part, part, 2 /* MPOL_BIND */, &mask,
			    sizeof(mask) * 8 + 1, 0UL))
			break;
		settle_nodes[settle_nr++] = nodes[i];
	}
	if (settle_nr < n)                              /* one node, or mbind refused: unbound */
		settle_nr = 0;
	for (size_t off = 0; off < SETTLE_LEN; off += 2UL << 20)
		settle_base[off] = 1;
}

/* SETTLE_FAULTS faults in each part; " fnodes=A,B" into out when bound. Returns the faults. */
static int settle(char *out, size_t cap)
{
	int n = 0, parts = settle_nr ? settle_nr : 1;
	size_t part = SETTLE_LEN / parts & ~((2UL << 20) - 1), used = 0;
	out[0] = 0;
	for (int i = 0; settle_base && i < parts; i++) {
		int k = 0;
		while (k < SETTLE_FAULTS && (settle_next[i] + 1) * PG < part) {
			size_t off = ++settle_next[i] * PG;
			if (off % (2UL << 20) == 0)
				continue;
			settle_base[i * part + off] = 1;
			k++;
		}
		n += k;
		if (settle_nr && used < cap)
			used += (size_t)snprintf(out + used, cap - used, "%s%d", i ? "," : " fnodes=", settle_nodes[i]);
	}
	return n;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct region *find(const char *name, int create)
{
	for (int i = 0; i < MAXR; i++)
		if (regs[i].base && !strcmp(regs[i].name, name))
			return &regs[i];
	if (!create)
		return NULL;
	for (int i = 0; i < MAXR; i++)
		if (!regs[i].base) {
			snprintf(regs[i].name, sizeof(regs[i].name), "%s", name);
			return &regs[i];
		}
	return NULL;
}

/* splitmix64: a cheap, well-mixed value per (seed, word) */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void pattern_page(uint64_t *w, uint64_t seed, size_t pfn)
{
	uint64_t v = mix(seed ^ (pfn * 0x100000001b3ULL));
	for (size_t i = 0; i < PG / 8; i++)
		w[i] = v + i;
}

/* Pages whose memory no longer matches; a page unmapped by punch is skipped. */
static int page_mapped(struct region *r, size_t off)
{
	unsigned char vec;
	return mincore(r->base + off, PG, &vec) == 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

enum how { TOUCH, FILL, ALLOC };

static int do_map(const char *name, long mib, uint64_t seed, enum how how, int nohuge)
{
	if (mib <= 0 || mib > (1L << 20)) {
		printf("err bad size %ld\n", mib);
		return 1;
	}
	struct region *r = find(name, 0);
	if (r) {
		printf("err %s exists\n", name);
		return 1;
	}
	r = find(name, 1);
	if (!r) {
		printf("err too many regions\n");
		return 1;
	}
	size_t len = (size_t)mib << 20;
	double t0 = now_ms();
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		printf("err mmap %zu\n", len);
		r->name[0] = 0;
		return 1;
	}
	madvise(p, len, nohuge ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
	if (how == FILL)
		for (size_t off = 0; off < len; off += PG)
			pattern_page((uint64_t *)(p + off), seed, off / PG);
	else if (how == ALLOC) {
		if (madvise(p, len, MADV_POPULATE_WRITE)) {
			printf("err MADV_POPULATE_WRITE\n");
			munmap(p, len);
			r->name[0] = 0;
			return 1;
		}
	} else
		memset(p, 0x5a, len);
	r->base = p;
	r->len = len;
	r->seed = seed;
	r->filled = how == FILL;
	r->ptemapped = nohuge;
	printf("ok mib=%ld ms=%.0f\n", mib, now_ms() - t0);
	return 0;
}

#define KPF_THP 22
#define PM_PRESENT (1ULL << 63)
#define PM_PFN ((1ULL << 55) - 1)

/* Bulk reads: one syscall per CHUNK pagemap entries and per KPF_WIN kpageflags entries
 * (a 2 MiB window), not two per page: 524288 preads took 3.4-3.7 s for 1 GiB under TCG. */
#define CHUNK 4096
#define KPF_WIN 512

struct kpf_cache {
	int fd;
	unsigned long long first;	/* pfn of flags[0]; ~0 when empty */
	size_t n;
	uint64_t flags[KPF_WIN];
};

static uint64_t kpf_get(struct kpf_cache *c, unsigned long long pfn)
{
	if (c->first == ~0ULL || pfn < c->first || pfn >= c->first + c->n) {
		c->first = pfn & ~(unsigned long long)(KPF_WIN - 1);
		ssize_t got = pread(c->fd, c->flags, sizeof c->flags, (off_t)c->first * 8);
		c->n = got > 0 ? (size_t)got / 8 : 0;
		if (pfn >= c->first + c->n)
			return 0;
	}
	return c->flags[pfn - c->first];
}

#define PMD (2UL << 20)

/* /proc/zoneinfo whole, NUL-terminated, in a static buffer (empty if unreadable); each call
 * reads it again. */
static char *zoneinfo_read(void)
{
	static char buf[1 << 16];
	int fd = open("/proc/zoneinfo", O_RDONLY);
	ssize_t n = 0, got;
	while (fd >= 0 && n < (ssize_t)sizeof(buf) - 1 && (got = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += got;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

/* This CPU's per-cpu list state per zone, read from /proc/zoneinfo just before an unmap:
 * " pcp=NODE.ZONE:COUNT/HIGH/BATCH,..." into out. zoneinfo read earlier can be a 6.12
 * decay_pcp_high step old (high lowered by 1/8 once a second). */
static void pcp_now(char *out, size_t cap)
{
	char *buf = zoneinfo_read();
	int cpu = sched_getcpu(), node = -1, in_cpu = 0;
	size_t used = (size_t)snprintf(out, cap, " pcp=");
	char zone[32] = "", *save = NULL;
	long count = -1, high = -1;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		int k;
		long v;
		if (sscanf(l, "Node %d, zone %31s", &node, zone) == 2) {
			in_cpu = 0;
		} else if (sscanf(l, " cpu: %d", &k) == 1) {
			in_cpu = k == cpu;
		} else if (in_cpu && sscanf(l, " count: %ld", &v) == 1) {
			count = v;
		} else if (in_cpu && sscanf(l, " high: %ld", &v) == 1) {
			high = v;
		} else if (in_cpu && sscanf(l, " batch: %ld", &v) == 1 && used < cap) {
			used += (size_t)snprintf(out + used, cap - used, "%s%d.%s:%ld/%ld/%ld", used > 5 ? "," : "",
						 node, zone, count, high, v);
			in_cpu = 0;
		}
	}
}

/* From /proc/zoneinfo: the sum of this CPU's per-cpu list highs over its zones (*highs) and
 * the zones' nr_mlock (*mlocked), each -1 where absent. */
static void zoneinfo_now(long *highs, long *mlocked)
{
	char *buf = zoneinfo_read(), *save = NULL;
	int cpu = sched_getcpu(), in_cpu = 0, k;
	long v;
	*highs = *mlocked = -1;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (sscanf(l, " cpu: %d", &k) == 1)
			in_cpu = k == cpu;
		else if (in_cpu && sscanf(l, " high: %ld", &v) == 1)
			*highs = (*highs < 0 ? 0 : *highs) + v;
		else if (sscanf(l, " nr_mlock %ld", &v) == 1)
			*mlocked = (*mlocked < 0 ? 0 : *mlocked) + v;
	}
}

/* 6.12's decay_pcp_high runs from vmstat_update once a second on each CPU and lowers its highs
 * by 1/8 while they are over high_min; a release it falls inside flushes otherwise. */
#define SYNC_MS 1300

/* The last poll before the one that saw vmstat_update run (guest ms; -1: none): the run fell
 * after it, so the next one on this CPU is at least 750 ms after it (round_jiffies_relative
 * rounds a second's delay down by at most a quarter). `free` says how long after it its unmap
 * ended (sync_age_ms): a starved vCPU can see the run late and release into the next. */
static double sync_before_ms = -1;

/* Wait until vmstat_update runs on this CPU, at most SYNC_MS: 1 if it was seen, with how
 * (*via). Two signs: its decay step lowers this CPU's highs, or it folds this CPU's NR_MLOCK
 * diff, which a page mapped MAP_LOCKED here just made, into the zone's nr_mlock (nothing else
 * in the guest mlocks). The second is what shows the run where the highs are already at
 * high_min (a booted guest's, long after its boot), and a step lowers nothing before the
 * release but would inside it, once its frees have raised the highs (nr_pcp_high). The page
 * is one order-0 allocation from this CPU's list, before the release's read of the lists.
 * It polls without sleeping: a CPU going idle while vmstat_update is queued folds its diffs
 * there without a decay step (quiet_vmstat), which read as a step after ~20 ms every time. */
static int decay_sync(double *waited_ms, const char **via)
{
	double t0 = now_ms(), before = t0;
	long h0, m0, h, m;
	int seen = 0;
	zoneinfo_now(&h0, &m0);
	void *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE,
		       -1, 0);
	if (p == MAP_FAILED)
		m0 = -1;	/* no mlock (no CAP_IPC_LOCK, RLIMIT_MEMLOCK): the highs alone */
	*via = "none";
	sync_before_ms = -1;
	while (now_ms() - t0 < SYNC_MS) {
		double polled = now_ms();
		zoneinfo_now(&h, &m);
		if ((h >= 0 && h < h0) || (m0 >= 0 && m >= 0 && m != m0)) {
			*via = h >= 0 && h < h0 ? "high" : "mlock";
			seen = 1;
			sync_before_ms = before;
			break;
		}
		if (h > h0)	/* an allocation's refill raised a high (nr_pcp_alloc): start from there */
			h0 = h;
		before = polled;
	}
	*waited_ms = now_ms() - t0;
	return seen;	/* the page stays mapped and locked: unlocking it would put a diff back */
}

/* The PTE tables munmap of [start, end) frees after its pages (6.1 mm/memory.c free_pgtables ->
 * free_pgd_range, its pages' gather batch): the 2 MiB spans from start's, less that one if the
 * mapping before ends in it (floor), to end's, less that one if the mapping after begins in it
 * (ceiling), each if it holds a table (has[i] for the i-th span from base's). floor/ceiling 0:
 * read from /proc/self/maps. */
static size_t pt_freed(uintptr_t start, uintptr_t end, uintptr_t floor, uintptr_t ceiling,
		       uintptr_t base, const unsigned char *has)
{
	if (!floor || !ceiling) {
		FILE *f = fopen("/proc/self/maps", "r");
		char line[512];
		uintptr_t fl = 0, ce = 0;
		while (f && fgets(line, sizeof line, f)) {
			unsigned long long a, b;
			if (sscanf(line, "%llx-%llx", &a, &b) != 2)
				continue;
			if (b <= start && b > fl)
				fl = b;
			if (a >= end && (!ce || a < ce))
				ce = a;
		}
		if (f)
			fclose(f);
		floor = floor ? floor : fl;
		ceiling = ceiling ? ceiling : ce;
	}
	uintptr_t addr = start & ~(PMD - 1);
	if (addr < floor)
		addr += PMD;
	if (ceiling)
		ceiling &= ~(PMD - 1);
	if (end - 1 > ceiling - 1)	/* unsigned: no ceiling (0) never trims */
		end -= PMD;
	size_t n = 0;
	for (uintptr_t s = addr; end && s <= end - 1; s += PMD)
		n += has[(s - (base & ~(PMD - 1))) / PMD];
	return n;
}

/* One line: the PFN runs behind [off, off+len) of every step-th window of r, VA order. */
static void do_pfns(struct region *r, size_t keep, size_t gap)
{
	int pm = open("/proc/self/pagemap", O_RDONLY), kf = open("/proc/kpageflags", O_RDONLY);
	if (pm < 0 || kf < 0) {
		printf("err open pagemap/kpageflags\n");
		if (pm >= 0) close(pm);
		if (kf >= 0) close(kf);
		return;
	}
	static struct kpf_cache kc;
	static uint64_t ent[CHUNK];
	kc.fd = kf, kc.first = ~0ULL, kc.n = 0;
	size_t cap = 1 << 16, used = 0, pages = 0, runs = 0;
	char *out = malloc(cap);
	uintptr_t b0 = (uintptr_t)r->base & ~(PMD - 1);
	size_t spans = ((uintptr_t)r->base + r->len - b0 + PMD - 1) / PMD;
	unsigned char *has = calloc(spans, 1);	/* spans holding a PTE table */
	for (size_t i = 0; r->ptemapped && i < spans; i++)
		has[i] = 1;
	unsigned long long start = 0, n = 0;
	int huge = 0;
	/* without keep/gap: the whole region as one window */
	size_t first = gap ? keep : 0, step = gap ? keep + gap : r->len, wlen = gap ? gap : r->len;
	for (size_t w = first; w < r->len; w += step) {
		size_t end = w + wlen <= r->len ? w + wlen : r->len;
		for (size_t off = w; off < end; off += CHUNK * PG) {
			size_t want = (end - off) / PG < CHUNK ? (end - off + PG - 1) / PG : CHUNK;
			off_t vpn = (off_t)((uintptr_t)(r->base + off) / PG);
			ssize_t got = pread(pm, ent, want * 8, vpn * 8);
			size_t have = got > 0 ? (size_t)got / 8 : 0;
			for (size_t i = 0; i < have; i++) {
				uint64_t e = ent[i];
				if (!(e & PM_PRESENT))
					continue;
				unsigned long long pfn = e & PM_PFN;
				if (!pfn) {	/* PFNs read as 0 without CAP_SYS_ADMIN */
					printf("err pagemap shows PFN 0: not root?\n");
					close(pm), close(kf), free(out), free(has);
					return;
				}
				int h = (kpf_get(&kc, pfn) >> KPF_THP) & 1;
				if (!h)
					has[((uintptr_t)r->base + off + i * PG - b0) / PMD] = 1;
				pages++;
				if (n && pfn == start + n && h == huge) {
					n++;
					continue;
				}
				if (n) {
					if (cap - used < 64) out = realloc(out, cap *= 2);
					used += snprintf(out + used, cap - used, " %llu+%llu%s", start, n, huge ? "h" : "");
					runs++;
				}
				start = pfn, n = 1, huge = h;
			}
		}
	}
	if (n) {
		if (cap - used < 64) out = realloc(out, cap *= 2);
		used += snprintf(out + used, cap - used, " %llu+%llu%s", start, n, huge ? "h" : "");
		runs++;
	}
	/* the tables the unmap (or each of punch's) frees: a punch's hole lies between two kept
	 * parts (its floor and ceiling) but where it reaches the region's end */
	size_t pt = 0;
	uintptr_t base = (uintptr_t)r->base, top = base + r->len;
	for (size_t w = first; w < r->len; w += step) {
		uintptr_t ws = base + w, we = w + wlen <= r->len ? base + w + wlen : top;
		pt += pt_freed(ws, we, gap ? ws : 0, gap && we < top ? we : 0, base, has);
	}
	close(pm);
	close(kf);
	printf("ok pages=%zu runs=%zu pt=%zu%.*s\n", pages, runs, pt, (int)used, out);
	free(out);
	free(has);
}

int main(void)
{
	char line[256], cmd[32], name[32];
	setvbuf(stdout, NULL, _IOLBF, 0);
	settle_init();
	while (fgets(line, sizeof(line), stdin)) {
		long a = 0, b = 0;
		unsigned long long seed = 0;
		char opt[16] = "";
		int n = sscanf(line, "%31s %31s", cmd, name);
		if (n < 1)
			continue;
		if (!strcmp(cmd, "quit"))
			break;
		if (!strcmp(cmd, "cpu") && n == 2) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(atoi(name), &set);
			if (sched_setaffinity(0, sizeof(set), &set))
				printf("err sched_setaffinity %s\n", name);
			else
				printf("ok cpu=%d\n", sched_getcpu());
			continue;
		}
		if (!strcmp(cmd, "sync")) {
			double waited = 0;
			const char *via;
			int seen = decay_sync(&waited, &via);
			printf("ok synced=%d sync_ms=%.0f via=%s\n", seen, waited, via);
			continue;
		}
		if (n < 2) {
			printf("err missing name\n");
			continue;
		}
		struct region *r = find(name, 0);
		if (!strcmp(cmd, "touch")) {
			n = sscanf(line, "%*s %*s %ld %15s", &a, opt);
			do_map(name, n >= 1 ? a : 0, 0, TOUCH, !strcmp(opt, "nohuge"));
		} else if (!strcmp(cmd, "alloc")) {
			n = sscanf(line, "%*s %*s %ld %15s", &a, opt);
			do_map(name, n >= 1 ? a : 0, 0, ALLOC, !strcmp(opt, "nohuge"));
		} else if (!strcmp(cmd, "fill")) {
			n = sscanf(line, "%*s %*s %ld %llu %15s", &a, &seed, opt);
			if (n < 2)
				printf("err usage: fill NAME MIB SEED [nohuge]\n");
			else
				do_map(name, a, seed, FILL, !strcmp(opt, "nohuge"));
		} else if (!r) {
			printf("err no region %s\n", name);
		} else if (!strcmp(cmd, "verify") || !strcmp(cmd, "zerocheck")) {
			int verify = !strcmp(cmd, "verify");
			if (verify && !r->filled) {
				printf("err %s holds no pattern\n", name);
				continue;
			}
			uint64_t want[PG / 8], zero[PG / 8] = {0};
			size_t pages = 0, bad = 0;
			for (size_t off = 0; off < r->len; off += PG) {
				if (!page_mapped(r, off))
					continue;
				pages++;
				if (verify)
					pattern_page(want, r->seed, off / PG);
				if (memcmp(r->base + off, verify ? want : zero, PG))
					bad++;
			}
			printf("ok pages=%zu %s=%zu\n", pages, verify ? "bad" : "nonzero", bad);
		} else if (!strcmp(cmd, "punch")) {
			if (sscanf(line, "%*s %*s %ld %ld", &a, &b) != 2 || a <= 0 || b <= 0 ||
			    (a * 1024) % PG || (b * 1024) % PG) {
				printf("err usage: punch NAME KEEP_KIB GAP_KIB (multiples of 4)\n");
				continue;
			}
			size_t keep = a * 1024, gap = b * 1024, done = 0;
			double t0 = now_ms();
			for (size_t off = keep; off < r->len; off += keep + gap) {
				size_t l = off + gap <= r->len ? gap : r->len - off;
				munmap(r->base + off, l);
				done += l;
			}
			char fn[64];
			int f = settle(fn, sizeof fn);
			/* a hole or a kept part not whole 2 MiB splits the huge pages there into PTE tables */
			if (((uintptr_t)r->base | keep | gap) & (PMD - 1))
				r->ptemapped = 1;
			printf("ok unmapped_kib=%zu ms=%.0f faults=%d%s\n", done / 1024, now_ms() - t0, f, fn);
		} else if (!strcmp(cmd, "pfns")) {
			n = sscanf(line, "%*s %*s %ld %ld", &a, &b);
			if (n == 2 && (a <= 0 || b <= 0 || (a * 1024) % PG || (b * 1024) % PG)) {
				printf("err usage: pfns NAME [KEEP_KIB GAP_KIB] (multiples of 4)\n");
				continue;
			}
			do_pfns(r, n == 2 ? a * 1024 : 0, n == 2 ? b * 1024 : 0);
		} else if (!strcmp(cmd, "free")) {
			char pcp[512];
			double tp = now_ms();
			pcp_now(pcp, sizeof pcp);
			double t0 = now_ms();
			munmap(r->base, r->len);
			double t1 = now_ms();
			char age[48] = "";
			if (sync_before_ms >= 0)
				snprintf(age, sizeof age, " sync_age_ms=%.0f", t1 - sync_before_ms);
			sync_before_ms = -1;
			char fn[64];
			int f = settle(fn, sizeof fn);
			unsigned cpu = 0, node = 0;
			syscall(SYS_getcpu, &cpu, &node, NULL);
			r->base = NULL;
			r->name[0] = 0;
			/* pcp_us: from the read's start to the unmap's */
			printf("ok ms=%.0f faults=%d%s node=%u pcp_us=%.0f%s%s\n", now_ms() - t0, f, fn, node, (t0 - tp) * 1000,
			       age, pcp);
		} else {
			printf("err unknown command %s\n", cmd);
		}
	}
	return 0;
}
