/*
 * e2epfn: one compact snapshot of the guest's page frames, for the per-block
 * join with the host's page residency (harness/perblock.py parses it).
 *
 * Prints, in this order:
 *   e2epfn 4               (1: before the P class; 2: before the T class; 3: before pcp)
 *   == buddyinfo            /proc/buddyinfo just before the scan (a cross-check of the inferred blocks)
 *   == zoneinfo             /proc/zoneinfo (zone ranges: start_pfn, spanned)
 *   == runs                 /proc/kpageflags, run-length encoded: "C START COUNT" per run of one class
 *   == pcp ...              the per-cpu lists, read from /proc/kcore right after the scan (only
 *                           with `--pcp`, see below, whose offsets the line repeats; the
 *                           section is empty without it)
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
 *   T  KPF_PGTABLE: a page table (pagetable_pte_ctor and the like mark it). An unmap frees its
 *      PTE tables onto the per-cpu lists by count, not by place: where they are tells which
 *      regions their drain can complete (harness/model/release.py, pcp_unknown_pages)
 *   P  no flag at all: a free page on a per-cpu list (free_pages_prepare cleared its flags),
 *      or a kernel page that carries none; a whole aligned 2 MiB of them is most likely a
 *      THP on a per-cpu THP list (harness/verdict/prediction.py pcp_thp_heads)
 *   A  anything else: allocated, or isolated for a report
 * Block heads and orders are inferred on the host, where they can be tested.
 *
 * `e2epfn cache` prints instead, on one line, the page-cache pages drop_caches can free:
 * "ok pages=P runs=R PFN+N ...", pfn order (LRU, not anonymous, swap-backed, mapped,
 * unevictable, dirty, under writeback or locked: mm/truncate.c mapping_evict_folio).
 *
 * Small, static buffers faulted in before the scan: the scan should disturb
 * the free lists it looks at as little as possible.
 *
 * `e2epfn --pcp VMEMMAP PAGESIZE LINK COUNT LISTS NLISTS NAME=ADDR...` walks, after the scan,
 * the per-cpu lists of every `struct per_cpu_pages` at ADDR (kernel virtual addresses the host
 * worked out from BTF and kallsyms: harness/measure/pcplists.py). Per NAME (zone/cpu):
 *   C NAME COUNT           pcp->count (the int at ADDR + COUNT)
 *   L NAME J PFN...        list J (the list_head at ADDR + LISTS + 16 J) from its head (the
 *                          newest page) on: each entry is a struct page's member at LINK
 *   X NAME J               list J could not be walked (a pointer outside the memory map, or
 *                          longer than any list: it changed under the walk)
 *   E /proc/kcore          the only line where kcore cannot be read (lockdown): no walk
 * `e2epfn peek ADDR LEN...` prints "ADDR HEX" per pair: kernel memory through /proc/kcore.
 *
 * `e2epfn pid PID...`: the guest pages those processes alone hold, i.e. what
 * their exit will free (harness/scenarios/workload.py reads it while they are
 * held at their exit): from /proc/PID/pagemap, every present page of an
 * anonymous private mapping that is mapped exclusively (bits 63, 61 clear, 56;
 * Documentation/admin-guide/mm/pagemap.rst), sorted, as runs of consecutive
 * PFNs, each split by whether /proc/kpageflags calls it part of a transparent
 * huge page (KPF_THP); the zero page (KPF_ZERO_PAGE) is never freed and left out:
 *   e2epfn-pid 1
 *   P START COUNT HUGE      HUGE is 1 for THP pages
 *   == end pages=N huge=H
 */
#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KPF_UPTODATE 3
#define KPF_BUDDY 10
#define KPF_NOPAGE 20
#define KPF_RESERVED 32
#define KPF_THP 22
#define KPF_ZERO_PAGE 24
#define KPF_PGTABLE 26
#define PM_PRESENT (1ULL << 63)
#define PM_FILE (1ULL << 61)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_PFN ((1ULL << 55) - 1)
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
	if (f & (1ULL << KPF_PGTABLE))
		return 'T';
	return f ? 'A' : 'P';
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

/* /proc/kcore: an ELF core whose PT_LOAD segments map kernel virtual addresses (fs/proc/kcore.c) */
static int kcore = -1;
static Elf64_Phdr phdrs[512];
static int nphdrs;

static int kcore_open(void)
{
	Elf64_Ehdr eh;
	kcore = open("/proc/kcore", O_RDONLY);
	if (kcore < 0)
		return -1;
	if (pread(kcore, &eh, sizeof(eh), 0) != sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phnum > 512) {
		close(kcore);
		return -1;
	}
	nphdrs = eh.e_phnum;
	ssize_t want = (ssize_t)nphdrs * sizeof(Elf64_Phdr);
	return pread(kcore, phdrs, want, eh.e_phoff) == want ? 0 : -1;
}

static int kread(uint64_t addr, void *to, size_t len)
{
	for (int i = 0; i < nphdrs; i++) {
		Elf64_Phdr *p = &phdrs[i];
		if (p->p_type == PT_LOAD && addr >= p->p_vaddr && addr + len <= p->p_vaddr + p->p_filesz)
			return pread(kcore, to, len, p->p_offset + (addr - p->p_vaddr)) == (ssize_t)len ? 0 : -1;
	}
	return -1;
}

static int peek_mode(int argc, char **argv)
{
	unsigned char b[4096];
	if (kcore_open()) {
		perror("/proc/kcore");
		return 1;
	}
	for (int i = 2; i + 1 < argc; i += 2) {
		uint64_t addr = strtoull(argv[i], NULL, 0);
		size_t len = strtoull(argv[i + 1], NULL, 0);
		if (len > sizeof(b) || kread(addr, b, len)) {
			fprintf(stderr, "e2epfn: cannot read %zu bytes at %s in /proc/kcore\n", len, argv[i]);
			return 1;
		}
		printf("%s ", argv[i]);
		for (size_t k = 0; k < len; k++)
			printf("%02x", b[k]);
		printf("\n");
	}
	return 0;
}

#define MAX_WALK 1000000 /* more entries than any list holds: the list changed under the walk */

/* argv: VMEMMAP PAGESIZE LINK COUNT LISTS NLISTS NAME=ADDR... (see the header) */
static void pcp_walk(int argc, char **argv)
{
	if (argc < 7) {
		printf("== pcp\n");
		return;
	}
	printf("== pcp vmemmap=%s page=%s link=%s count=%s lists=%s nlists=%s\n", argv[0], argv[1], argv[2],
	       argv[3], argv[4], argv[5]);
	uint64_t vmemmap = strtoull(argv[0], NULL, 0), size = strtoull(argv[1], NULL, 0);
	uint64_t link = strtoull(argv[2], NULL, 0), count_off = strtoull(argv[3], NULL, 0);
	uint64_t lists = strtoull(argv[4], NULL, 0), nlists = strtoull(argv[5], NULL, 0);
	if (kcore_open()) {
		printf("E /proc/kcore\n"); /* not readable here (lockdown): the scan goes on without the walk */
		return;
	}
	for (int i = 6; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq)
			continue;
		*eq = 0;
		const char *name = argv[i];
		uint64_t pcp = strtoull(eq + 1, NULL, 0);
		int count = -1;
		if (kread(pcp + count_off, &count, sizeof(count)))
			count = -1;
		printf("C %s %d\n", name, count);
		for (uint64_t j = 0; j < nlists; j++) {
			uint64_t head = pcp + lists + 16 * j, at = head, n = 0;
			int bad = 0;
			printf("L %s %llu", name, (unsigned long long)j);
			for (;;) {
				if (kread(at, &at, 8)) {
					bad = 1;
					break;
				}
				if (at == head)
					break;
				if (at < vmemmap + link || (at - vmemmap - link) % size || ++n > MAX_WALK) {
					bad = 1;
					break;
				}
				printf(" %llu", (unsigned long long)((at - vmemmap - link) / size));
			}
			printf("\n");
			if (bad)
				printf("X %s %llu\n", name, (unsigned long long)j);
		}
	}
	close(kcore);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t *pfns;
static size_t npfns, cap;

static int collect(const char *pid)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%s/maps", pid);
	FILE *maps = fopen(path, "r");
	snprintf(path, sizeof(path), "/proc/%s/pagemap", pid);
	int pm = open(path, O_RDONLY);
	if (!maps || pm < 0) {
		fprintf(stderr, "e2epfn: process %s: cannot read its maps or pagemap\n", pid);
		return 1;
	}
	while (fgets(line, sizeof(line), maps)) {
		unsigned long long start, end;
		if (sscanf(line, "%llx-%llx", &start, &end) != 2 || strstr(line, "[vsyscall]"))
			continue;
		for (uint64_t va = start; va < end;) {
			size_t want = (end - va) / 4096;
			if (want > CHUNK)
				want = CHUNK;
			ssize_t n = pread(pm, buf, want * 8, (off_t)(va / 4096) * 8);
			if (n <= 0)
				break;
			for (size_t i = 0; i < (size_t)n / 8; i++) {
				uint64_t e = buf[i];
				if (!(e & PM_PRESENT) || (e & PM_FILE) || !(e & PM_EXCLUSIVE) || !(e & PM_PFN))
					continue;
				if (npfns == cap) {
					cap = cap ? cap * 2 : 65536;
					pfns = realloc(pfns, cap * sizeof(*pfns));
					if (!pfns)
						return 1;
				}
				pfns[npfns++] = e & PM_PFN;
			}
			va += (uint64_t)(n / 8) * 4096;
		}
	}
	fclose(maps);
	close(pm);
	return 0;
}

static int pid_mode(int argc, char **argv)
{
	for (int i = 2; i < argc; i++)
		if (collect(argv[i]))
			return 1;
	qsort(pfns, npfns, sizeof(*pfns), cmp_u64);
	int kpf = open("/proc/kpageflags", O_RDONLY);
	if (kpf < 0) {
		perror("/proc/kpageflags");
		return 1;
	}
	printf("e2epfn-pid 1\n");
	uint64_t total = 0, huge = 0, start = 0, count = 0;
	int cur = -1;
	for (size_t i = 0; i < npfns; i++) {
		if (i && pfns[i] == pfns[i - 1])
			continue; /* one page mapped twice by the processes given */
		uint64_t f = 0;
		if (pread(kpf, &f, 8, (off_t)pfns[i] * 8) != 8 || (f & (1ULL << KPF_ZERO_PAGE)))
			continue;
		int h = !!(f & (1ULL << KPF_THP));
		if (cur >= 0 && (h != cur || pfns[i] != start + count)) {
			printf("P %llu %llu %d\n", (unsigned long long)start, (unsigned long long)count, cur);
			cur = -1;
		}
		if (cur < 0) {
			start = pfns[i];
			count = 0;
			cur = h;
		}
		count++;
		total++;
		huge += h;
	}
	if (cur >= 0)
		printf("P %llu %llu %d\n", (unsigned long long)start, (unsigned long long)count, cur);
	printf("== end pages=%llu huge=%llu\n", (unsigned long long)total, (unsigned long long)huge);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "cache"))
		return cache_pages();
	if (argc >= 3 && strcmp(argv[1], "pid") == 0)
		return pid_mode(argc, argv);
	if (argc >= 4 && strcmp(argv[1], "peek") == 0)
		return peek_mode(argc, argv);
	int pcp = argc >= 2 && strcmp(argv[1], "--pcp") == 0;
	static char out[256 << 10]; /* the runs (~10-30 KB) go out after the scan, not during it */
	/* fault the buffers in now, so the scan itself allocates no guest pages */
	memset(out, 0, sizeof(out));
	memset(buf, 0, sizeof(buf));
	memset(phdrs, 0, sizeof(phdrs)); /* the walk's, faulted in before the scan too */
	setvbuf(stdout, out, _IOFBF, sizeof(out));
	printf("e2epfn 4\n");
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
	pcp_walk(pcp ? argc - 2 : 0, argv + 2);
	cat("buddyinfo", "/proc/buddyinfo");
	printf("== end pfns=%llu scan_us=%.0f\n", (unsigned long long)pfn, t1 - t0);
	return 0;
}
