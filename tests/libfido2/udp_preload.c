/*
 * LD_PRELOAD shim: lets libfido2 (and so fido2-token / fido2-cred / fido2-assert) talk
 * CTAPHID over UDP to `pocketkey serve --udp`.
 *
 * Device paths of the form "udp:HOST:PORT" get UDP I/O functions installed before the
 * real fido_dev_open() runs. Each datagram is one 64-byte CTAPHID report without a
 * report-ID byte; libfido2 writes 65 bytes with a leading report ID 0, which is stripped.
 *
 * If POCKETKEY_UDP_DEVICE=udp:HOST:PORT is set, fido_dev_info_manifest() also lists that
 * device, so `fido2-token -L` shows it.
 *
 * Build: cc -shared -fPIC -o udp_preload.so udp_preload.c $(pkg-config --cflags --libs libfido2) -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <fido.h>

#define UDP_PREFIX "udp:"
#define REPORT_LEN 64

struct udp_dev {
	int fd;
};

static int debug_enabled(void)
{
	const char *d = getenv("POCKETKEY_PRELOAD_DEBUG");
	return d != NULL && *d != '\0' && strcmp(d, "0") != 0;
}

#define DBG(...)                                                        \
	do {                                                            \
		if (debug_enabled())                                    \
			fprintf(stderr, "udp_preload: " __VA_ARGS__);   \
	} while (0)

static int is_udp_path(const char *path)
{
	return path != NULL && strncmp(path, UDP_PREFIX, strlen(UDP_PREFIX)) == 0;
}

/* "udp:HOST:PORT" -> connected UDP socket, or -1. HOST may be "[v6addr]". */
static int udp_connect(const char *path)
{
	char buf[256];
	char *host, *port;
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1;

	if (!is_udp_path(path) || strlen(path) >= sizeof(buf))
		return -1;
	strcpy(buf, path + strlen(UDP_PREFIX));
	port = strrchr(buf, ':');
	if (port == NULL || port[1] == '\0')
		return -1;
	*port++ = '\0';
	host = buf;
	if (host[0] == '[') {
		size_t n = strlen(host);
		if (n < 2 || host[n - 1] != ']')
			return -1;
		host[n - 1] = '\0';
		host++;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static void *udp_open(const char *path)
{
	struct udp_dev *d;
	int fd = udp_connect(path);

	if (fd < 0) {
		DBG("cannot open %s\n", path ? path : "(null)");
		return NULL;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		close(fd);
		return NULL;
	}
	d->fd = fd;
	DBG("opened %s (fd %d)\n", path, fd);
	return d;
}

static void udp_close(void *handle)
{
	struct udp_dev *d = handle;

	if (d == NULL)
		return;
	close(d->fd);
	free(d);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read one report. ms < 0 waits forever; otherwise at most ms milliseconds. */
static int udp_read(void *handle, unsigned char *buf, size_t len, int ms)
{
	struct udp_dev *d = handle;
	unsigned char pkt[2048];
	int64_t deadline = ms >= 0 ? now_ms() + ms : -1;

	if (d == NULL || buf == NULL)
		return -1;
	for (;;) {
		struct pollfd pfd = { .fd = d->fd, .events = POLLIN };
		int wait = -1, r;
		ssize_t n;

		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			wait = left > 0 ? (int)left : 0;
		}
		r = poll(&pfd, 1, wait);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0) {
			DBG("read timeout after %d ms\n", ms);
			return -1;
		}
		n = recv(d->fd, pkt, sizeof(pkt), 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			DBG("recv: %s\n", strerror(errno));
			return -1;
		}
		if (n != REPORT_LEN) {
			DBG("dropping %zd-byte datagram\n", n);
			continue;
		}
		if (len > (size_t)n)
			len = (size_t)n;
		memcpy(buf, pkt, len);
		return (int)len;
	}
}

static int udp_write(void *handle, const unsigned char *buf, size_t len)
{
	struct udp_dev *d = handle;
	const unsigned char *p = buf;
	size_t n = len;
	unsigned char pkt[REPORT_LEN];

	if (d == NULL || buf == NULL || len == 0)
		return -1;
	/* libfido2 prefixes each report with its report ID (0). */
	if (n == REPORT_LEN + 1 && p[0] == 0) {
		p++;
		n--;
	}
	if (n > REPORT_LEN)
		return -1;
	memset(pkt, 0, sizeof(pkt));
	memcpy(pkt, p, n);
	if (send(d->fd, pkt, sizeof(pkt), 0) != (ssize_t)sizeof(pkt)) {
		DBG("send: %s\n", strerror(errno));
		return -1;
	}
	return (int)len;
}

static const fido_dev_io_t udp_io = {
	.open = udp_open,
	.close = udp_close,
	.read = udp_read,
	.write = udp_write,
};

int fido_dev_open(fido_dev_t *dev, const char *path)
{
	static int (*real_open)(fido_dev_t *, const char *);
	int r;

	if (real_open == NULL)
		real_open = (int (*)(fido_dev_t *, const char *))dlsym(RTLD_NEXT, "fido_dev_open");
	if (real_open == NULL) {
		fprintf(stderr, "udp_preload: fido_dev_open not found: %s\n", dlerror());
		return FIDO_ERR_INTERNAL;
	}
	if (is_udp_path(path)) {
		if ((r = fido_dev_set_io_functions(dev, &udp_io)) != FIDO_OK) {
			DBG("fido_dev_set_io_functions: %s\n", fido_strerr(r));
			return r;
		}
		DBG("using UDP transport for %s\n", path);
	}
	return real_open(dev, path);
}

int fido_dev_info_manifest(fido_dev_info_t *devlist, size_t ilen, size_t *olen)
{
	static int (*real_manifest)(fido_dev_info_t *, size_t, size_t *);
	const char *extra = getenv("POCKETKEY_UDP_DEVICE");
	int r;

	if (real_manifest == NULL)
		real_manifest = (int (*)(fido_dev_info_t *, size_t, size_t *))dlsym(
		    RTLD_NEXT, "fido_dev_info_manifest");
	if (real_manifest == NULL)
		return FIDO_ERR_INTERNAL;
	r = real_manifest(devlist, ilen, olen);
	if (!is_udp_path(extra) || olen == NULL)
		return r;
	if (r != FIDO_OK)
		*olen = 0; /* no HID access here: still list the UDP device */
	if (*olen >= ilen)
		return FIDO_OK;
	if (fido_dev_info_set(devlist, *olen, extra, "PocketKey", "PocketKey (UDP)",
	    &udp_io, NULL) != FIDO_OK)
		return r;
	(*olen)++;
	return FIDO_OK;
}
