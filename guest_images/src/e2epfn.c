/*
 * e2epfn: one compact snapshot of the guest's page frames, for the per-block
 * join with the host's page residency (harness/perblock.py parses it).
 *
 * Prints, in this order:
 *   e2epfn 1
 *   == buddyinfo            /proc/buddyinfo just before the scan (a cross-check of the inferred blocks)
 *   == zoneinfo             /proc/zoneinfo (zone ranges: start_pfn, spanned)
 *   == runs                 /proc/kpageflags, run-length encoded: "C START COUNT" per run of one class
 *   == buddyinfo            again, just after the scan
 *   == end pfns=N scan_us=U
 *
 * Classes (bits from include/uapi/linux/kernel-page-flags.h, set by
 * fs/proc/page.c stable_page_flags):
 *   N  KPF_NOPAGE: no struct page (a hole)
 *   H  KPF_BUDDY and KPF_UPTODATE: the head of a reported free block
 *      (PG_reported aliases PG_uptodate, include/linux/page-flags.h; on a
 *      free page only page reporting sets it, mm/page_reporting.c
 *      page_reporting_drain)
 *   F  KPF_BUDDY: a free page (every page of a free block: stable_page_flags
 *      marks tails through is_free_buddy_page)
 *   R  KPF_RESERVED, not free
 *   A  anything else: allocated, on a per-cpu list, or isolated for a report
 * Block heads and orders are inferred on the host, where they can be tested.
 *
 * `e2epfn cache` prints instead, on one line, the page-cache pages drop_caches can free:
 * "ok pages=P runs=R PFN+N ...", pfn order (LRU, not anonymous, swap-backed, mapped,
 * unevictable, dirty, under writeback or locked: mm/truncate.c mapping_evict_folio).
 *
 * Small, static buffers faulted in before the scan: the scan should disturb
 * the free lists it looks at as little as possible.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KPF_UPTODATE 3
#define KPF_BUDDY 10
#define KPF_NOPAGE 20
#define KPF_RESERVED 32
#define CHUNK 16384 /* entries per read: 128 KiB */

static uint64_t buf[CHUNK];

static void cat(const char *name, const char *path)
{
	char b[4096];
	size_t n;
	FILE *f = fopen(path, "r");
	printf("== %s\n", name);
	if (!f) {
		printf("!! cannot open %s\n", path);
		return;
	}
	while ((n = fread(b, 1, sizeof(b), f)) > 0)
		fwrite(b, 1, n, stdout);
	fclose(f);
}

static char class_of(uint64_t f)
{
	if (f & (1ULL << KPF_NOPAGE))
		return 'N';
	if (f & (1ULL << KPF_BUDDY))
		return (f & (1ULL << KPF_UPTODATE)) ? 'H' : 'F';
	if (f & (1ULL << KPF_RESERVED))
		return 'R';
	return 'A';
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cache_pages(void)
{
	const uint64_t need = 1ULL << 5, skip = (1ULL << 12) | (1ULL << 14) | (1ULL << 11) | (1ULL << 18) |
		(1ULL << 4) | (1ULL << 8) | (1ULL << 0) | (1ULL << 10);
	int fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0) {
		printf("err /proc/kpageflags\n");
		return 1;
	}
	static char line[4 << 20];
	size_t used = 0, pages = 0, runs = 0;
	uint64_t pfn = 0, start = 0, len = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (size_t i = 0; i < (size_t)n / 8; i++, pfn++) {
			if ((buf[i] & need) && !(buf[i] & skip)) {
				pages++;
				if (len && start + len == pfn) {
					len++;
					continue;
				}
				if (len && used < sizeof(line) - 48) {
					used += snprintf(line + used, sizeof(line) - used, " %llu+%llu",
							 (unsigned long long)start, (unsigned long long)len);
					runs++;
				}
				start = pfn, len = 1;
			}
		}
	}
	close(fd);
	if (len && used < sizeof(line) - 48) {
		used += snprintf(line + used, sizeof(line) - used, " %llu+%llu",
				 (unsigned long long)start, (unsigned long long)len);
		runs++;
	}
	printf("ok pages=%zu runs=%zu%s\n", pages, runs, line);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "cache"))
		return cache_pages();
	static char out[256 << 10]; /* the runs (~10-30 KB) go out after the scan, not during it */
	/* fault the buffers in now, so the scan itself allocates no guest pages */
	memset(out, 0, sizeof(out));
	memset(buf, 0, sizeof(buf));
	setvbuf(stdout, out, _IOFBF, sizeof(out));
	printf("e2epfn 1\n");
	cat("buddyinfo", "/proc/buddyinfo");
	cat("zoneinfo", "/proc/zoneinfo");
	fflush(stdout);

	int fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0) {
		perror("/proc/kpageflags");
		return 1;
	}
	printf("== runs\n");
	double t0 = now_us();
	uint64_t pfn = 0, start = 0;
	char cur = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (size_t i = 0; i < (size_t)n / 8; i++, pfn++) {
			char c = class_of(buf[i]);
			if (c != cur) {
				if (cur)
					printf("%c %llu %llu\n", cur, (unsigned long long)start,
					       (unsigned long long)(pfn - start));
				cur = c;
				start = pfn;
			}
		}
	}
	double t1 = now_us();
	if (n < 0) {
		perror("read /proc/kpageflags");
		return 1;
	}
	if (cur)
		printf("%c %llu %llu\n", cur, (unsigned long long)start, (unsigned long long)(pfn - start));
	close(fd);
	cat("buddyinfo", "/proc/buddyinfo");
	printf("== end pfns=%llu scan_us=%.0f\n", (unsigned long long)pfn, t1 - t0);
	return 0;
}
