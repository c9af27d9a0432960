/*
 * port.c - the flatsat firmware core on a TI Stellaris LM3S6965 (Cortex-M3 at 50 MHz, 256 KiB flash, 64 KiB
 * SRAM), bare metal: the image QEMU's lm3s6965evb machine runs, and an EK-LM3S6965 board would run as is.
 *
 * The port gives the core (flatsat_board.h, fsb_io) what it needs, and nothing else lives here:
 *
 *   UART bytes in / out   UART0 (PA0 RX, PA1 TX), 8N1 at FSB_UART_BAUD. The receive interrupt moves bytes from
 *                         the PL011's FIFO into a ring buffer; the core reads the ring. Transmit is polled: a
 *                         turn sends a few frames of under 400 bytes.
 *   millisecond tick      SysTick at 1 kHz from the 50 MHz system clock.
 *   reset                 SYSRESETREQ: the core asks for it when the emulator has gone silent; the watchdog's
 *                         second time-out does the same when the main loop stops.
 *   log line              UART1 (PD2 RX, PD3 TX), polled: "t=<sim s>s <text>".
 *   idle                  WFI until the next interrupt (a received byte or the next tick).
 *
 * The hardware watchdog is fed from the main loop and from idle(); if the firmware hangs (or faults: every
 * fault handler spins), it interrupts after WATCHDOG_S and resets the chip after twice that. The board then
 * boots, says hello again and carries on.
 *
 * Build-time settings (make ... BOARD_DEFS='-DFSB_BUS_OFF_V=7.3 ...'), defaults in brackets:
 *   FSB_UART_BAUD [921600]  FSB_BOARD_NAME ["c-stub-lm3s6965"]  FSB_PERIOD_S [20]  FSB_BUS_OFF_V [29.2]
 *   FSB_BUS_ON_V [30.2]  FSB_SOC_OFF [0.30]  FSB_SOC_ON [0.55]  FSB_QUEUE [3]  FSB_TIMEOUT_MS [5000]
 *   FSB_TEST_STALL_AT_TURN (unset): a test build that stops feeding the watchdog at that turn, once.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "flatsat_board.h"

#ifndef FSB_UART_BAUD
#define FSB_UART_BAUD 921600u
#endif
#ifndef FSB_PERIOD_S
/* the reference controller's control period and job queue (firmware_stubs/reference): half the line traffic
 * of the host program's 10 s, well inside every standard scenario's response window (1 min for a hang), and
 * three queued jobs of ~12 s keep the accelerator busy through a period */
#define FSB_PERIOD_S 20.0
#endif
#ifndef FSB_QUEUE
#define FSB_QUEUE 3
#endif
#ifndef FSB_BOARD_NAME
#ifdef FLATSAT_NAIVE
#define FSB_BOARD_NAME "c-stub-naive-lm3s6965"
#else
#define FSB_BOARD_NAME "c-stub-lm3s6965"
#endif
#endif

#define CPU_HZ 50000000u /* PLL 400 MHz / 2 / SYSDIV 4, from the board's 8 MHz crystal */
#define LOG_BAUD 115200u
#define WATCHDOG_S 4u   /* interrupt after 4 s without a feed, reset after 8 s */
#define RX_RING 4096u   /* bytes; a power of two. 44 ms of line at 921600 baud */

#define REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* System control */
#define SYSCTL_RIS 0x400FE050u
#define SYSCTL_MISC 0x400FE058u
#define SYSCTL_RESC 0x400FE05Cu
#define SYSCTL_RCC 0x400FE060u
#define SYSCTL_RCGC0 0x400FE100u
#define SYSCTL_RCGC1 0x400FE104u
#define SYSCTL_RCGC2 0x400FE108u
#define RCC_MOSCDIS (1u << 0)
#define RCC_OSCSRC_MASK (3u << 4)
#define RCC_XTAL_MASK (0xFu << 6)
#define RCC_XTAL_8MHZ (0xEu << 6)
#define RCC_BYPASS (1u << 11)
#define RCC_OEN (1u << 12)
#define RCC_PWRDN (1u << 13)
#define RCC_USESYSDIV (1u << 22)
#define RCC_SYSDIV_MASK (0xFu << 23)
#define RCC_SYSDIV_4 (3u << 23)
#define RIS_PLLLRIS (1u << 6)

/* GPIO (alternate functions for the UART pins) */
#define GPIOA_BASE 0x40004000u
#define GPIOD_BASE 0x40007000u
#define GPIO_AFSEL 0x420u
#define GPIO_DEN 0x51Cu

/* PL011 UARTs */
#define UART0_BASE 0x4000C000u
#define UART1_BASE 0x4000D000u
#define UART_DR 0x000u
#define UART_FR 0x018u
#define UART_IBRD 0x024u
#define UART_FBRD 0x028u
#define UART_LCRH 0x02Cu
#define UART_CTL 0x030u
#define UART_IFLS 0x034u
#define UART_IM 0x038u
#define UART_ICR 0x044u
#define FR_BUSY (1u << 3)
#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)
#define LCRH_FEN (1u << 4)
#define LCRH_WLEN_8 (3u << 5)
#define CTL_UARTEN (1u << 0)
#define CTL_TXE (1u << 8)
#define CTL_RXE (1u << 9)
#define INT_RX (1u << 4)
#define INT_RT (1u << 6)
#define INT_OE (1u << 10)
#define DR_FE (1u << 8)
#define DR_OE (1u << 11)

/* Watchdog */
#define WDT_LOAD 0x40000000u
#define WDT_CTL 0x40000008u
#define WDT_ICR 0x4000000Cu
#define WDT_CTL_INTEN (1u << 0)
#define WDT_CTL_RESEN (1u << 1)

/* Cortex-M3 core */
#define SYST_CSR 0xE000E010u
#define SYST_RVR 0xE000E014u
#define SYST_CVR 0xE000E018u
#define NVIC_ISER0 0xE000E100u
#define NVIC_ICER0 0xE000E180u
#define SCB_AIRCR 0xE000ED0Cu
#define IRQ_UART0 5u
#define IRQ_WATCHDOG 18u

void systick_handler(void);
void uart0_handler(void);
void watchdog_handler(void);
int main(void);

extern uint32_t _stack_bottom, _stack_top; /* the linker script's stack reserve */

#define STACK_PAINT 0xA5A5A5A5u

static volatile uint32_t g_ms;
static uint8_t g_rx_ring[RX_RING];
static volatile uint32_t g_rx_head; /* written by the interrupt */
static volatile uint32_t g_rx_tail; /* written by the main loop */
static volatile bool g_rx_paused;   /* the ring was full: receive interrupts masked until it drains */
static volatile uint32_t g_rx_framing_errors, g_rx_overruns;

#ifdef FSB_TEST_STALL_AT_TURN
/* survives the watchdog reset (not zeroed at start-up): the test stalls the board once, not at every boot */
static uint32_t g_stalled_once __attribute__((section(".noinit")));
#define STALLED_MAGIC 0x57A11EDu
#endif

static void irq_off(void)
{
    __asm__ volatile("cpsid i" ::: "memory");
}

static void irq_on(void)
{
    __asm__ volatile("cpsie i" ::: "memory");
}

static void watchdog_feed(void)
{
    REG(WDT_ICR) = 1u; /* any write reloads the counter and clears its interrupt */
}

/* ---- clocks, tick, watchdog -------------------------------------------------------------------- */

static void clock_init(void)
{
    uint32_t rcc = REG(SYSCTL_RCC);
    uint32_t spin;
    /* the datasheet's order: run from the oscillator while the PLL starts, then switch to it */
    rcc = (rcc | RCC_BYPASS) & ~RCC_USESYSDIV;
    REG(SYSCTL_RCC) = rcc;
    rcc &= ~(RCC_XTAL_MASK | RCC_OSCSRC_MASK | RCC_PWRDN | RCC_OEN | RCC_MOSCDIS | RCC_SYSDIV_MASK);
    rcc |= RCC_XTAL_8MHZ | RCC_SYSDIV_4 | RCC_USESYSDIV;
    REG(SYSCTL_MISC) = RIS_PLLLRIS;
    REG(SYSCTL_RCC) = rcc;
    for (spin = 0; spin < 100000u && (REG(SYSCTL_RIS) & RIS_PLLLRIS) == 0; spin++) {
    }
    REG(SYSCTL_RCC) = rcc & ~RCC_BYPASS;
    /* clocks for the watchdog, UART0 and UART1, GPIO ports A and D */
    REG(SYSCTL_RCGC0) |= 1u << 3;
    REG(SYSCTL_RCGC1) |= (1u << 0) | (1u << 1);
    REG(SYSCTL_RCGC2) |= (1u << 0) | (1u << 3);
}

static void systick_init(void)
{
    REG(SYST_RVR) = CPU_HZ / 1000u - 1u;
    REG(SYST_CVR) = 0;
    REG(SYST_CSR) = 7u; /* processor clock, interrupt, enable */
}

void systick_handler(void)
{
    g_ms++;
}

static void watchdog_init(void)
{
    REG(WDT_LOAD) = WATCHDOG_S * CPU_HZ;
    REG(WDT_CTL) = WDT_CTL_INTEN | WDT_CTL_RESEN; /* first time-out: interrupt; second: reset */
    REG(NVIC_ISER0) = 1u << IRQ_WATCHDOG;
}

/* ---- UARTs ------------------------------------------------------------------------------------- */

static void uart_init(uint32_t base, uint32_t baud, bool rx_interrupt)
{
    /* divisor in 1/64ths: CPU_HZ / (16 baud), rounded */
    uint32_t div64 = (CPU_HZ * 4u + baud / 2u) / baud;
    REG(base + UART_CTL) = 0;
    REG(base + UART_IBRD) = div64 >> 6;
    REG(base + UART_FBRD) = div64 & 63u;
    REG(base + UART_LCRH) = LCRH_WLEN_8 | LCRH_FEN; /* 8N1, FIFOs on */
    REG(base + UART_IFLS) = 0;                      /* receive interrupt at 1/8 full, or the RX time-out */
    REG(base + UART_ICR) = 0x7FFu;
    REG(base + UART_IM) = rx_interrupt ? (INT_RX | INT_RT) : 0u;
    REG(base + UART_CTL) = CTL_UARTEN | CTL_TXE | CTL_RXE;
}

static void uart_init_all(void)
{
    REG(GPIOA_BASE + GPIO_AFSEL) |= 0x03u; /* PA0, PA1: U0RX, U0TX */
    REG(GPIOA_BASE + GPIO_DEN) |= 0x03u;
    REG(GPIOD_BASE + GPIO_AFSEL) |= 0x0Cu; /* PD2, PD3: U1RX, U1TX */
    REG(GPIOD_BASE + GPIO_DEN) |= 0x0Cu;
    uart_init(UART1_BASE, LOG_BAUD, false);
    uart_init(UART0_BASE, FSB_UART_BAUD, true);
    REG(NVIC_ISER0) = 1u << IRQ_UART0;
}

/* Receive: FIFO -> ring. The RX interrupt clears itself as the FIFO empties, so only the time-out and the
 * overrun are acknowledged here. A full ring masks the interrupt, leaving bytes in the FIFO (a real line
 * then overruns, counted and caught by the frame CRC; QEMU holds them back), until the core catches up. */
void uart0_handler(void)
{
    REG(UART0_BASE + UART_ICR) = INT_RT | INT_OE;
    while ((REG(UART0_BASE + UART_FR) & FR_RXFE) == 0) {
        uint32_t head = g_rx_head;
        uint32_t data;
        if (head - g_rx_tail >= RX_RING) {
            REG(UART0_BASE + UART_IM) = 0;
            g_rx_paused = true;
            return;
        }
        data = REG(UART0_BASE + UART_DR);
        if (data & DR_OE) {
            g_rx_overruns++;
        }
        if (data & DR_FE) {
            g_rx_framing_errors++;
        }
        g_rx_ring[head & (RX_RING - 1u)] = (uint8_t)data;
        g_rx_head = head + 1u;
    }
}

static int port_read_byte(void *ctx)
{
    uint32_t tail = g_rx_tail;
    uint8_t c;
    (void)ctx;
    if (tail == g_rx_head) {
        return FSB_IO_NONE;
    }
    c = g_rx_ring[tail & (RX_RING - 1u)];
    g_rx_tail = tail + 1u;
    if (g_rx_paused && g_rx_head - g_rx_tail <= RX_RING / 2u) {
        irq_off();
        g_rx_paused = false;
        REG(UART0_BASE + UART_IM) = INT_RX | INT_RT;
        irq_on();
    }
    return c;
}

static void uart_put(uint32_t base, uint8_t c)
{
    while (REG(base + UART_FR) & FR_TXFF) {
        watchdog_feed();
    }
    REG(base + UART_DR) = c;
}

static bool port_write_bytes(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    while (len-- > 0) {
        uart_put(UART0_BASE, *data++);
    }
    return true; /* a UART cannot tell whether anyone listens */
}

/* ---- log ------------------------------------------------------------------------------------------ */

static void log_str(const char *s)
{
    while (*s != '\0') {
        if (*s == '\n') {
            uart_put(UART1_BASE, '\r');
        }
        uart_put(UART1_BASE, (uint8_t)*s++);
    }
}

static void log_u32(uint32_t v)
{
    char buf[11];
    size_t i = sizeof buf - 1u;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0 && i > 0);
    log_str(&buf[i]);
}

static void log_field(const char *name, uint32_t v)
{
    log_str(" ");
    log_str(name);
    log_str("=");
    log_u32(v);
}

static void port_log(void *ctx, uint64_t t_ns, const char *text)
{
    (void)ctx;
    log_str("t=");
    log_u32((uint32_t)(t_ns / 1000000000u));
    log_str("s ");
    log_str(text);
    log_str("\n");
}

/* The stack is painted at boot: the deepest word no longer holding the paint is the high-water mark. */
static void stack_paint(void)
{
    uintptr_t sp;
    volatile uint32_t *p = &_stack_bottom;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    while ((uintptr_t)p < sp - 64u) { /* leave this frame alone */
        *p++ = STACK_PAINT;
    }
}

static uint32_t stack_used_bytes(void)
{
    const uint32_t *p = &_stack_bottom;
    while (p < &_stack_top && *p == STACK_PAINT) {
        p++;
    }
    return (uint32_t)((uintptr_t)&_stack_top - (uintptr_t)p);
}

static void log_stats(const fsb_board *b)
{
    const fsb_stats *s = &b->stats;
    log_str("stats:");
    log_field("turns", s->turns);
    log_field("steps", s->steps);
    log_field("requests", s->requests);
    log_field("refused", s->refused);
    log_field("timeouts", s->timeouts);
    log_field("retries", s->retries);
    log_field("lost", s->lost);
    log_field("unacked_steps", s->unacked_steps);
    log_field("missed_waits", s->missed_waits);
    log_field("restarts", s->restarts);
    log_field("decode_errors", s->decode_errors);
    log_field("bad_frames", b->rx.stats.bad_cobs + b->rx.stats.too_short + b->rx.stats.bad_crc + b->rx.stats.oversized);
    log_field("rx_overruns", g_rx_overruns);
    log_field("rx_framing_errors", g_rx_framing_errors);
    log_field("hang_resets", s->hang_resets);
    log_field("power_cycles", s->power_cycles);
    log_field("rail_resets", s->rail_resets);
    log_field("sheds", s->sheds);
    log_field("dvfs_changes", s->dvfs_changes);
    log_field("jobs_submitted", s->jobs_submitted);
    log_field("jobs_done", s->jobs_done);
    log_field("jobs_checked", s->jobs_checked);
    log_field("sdc_detected", s->sdc_detected);
    log_field("verdicts", s->verdicts);
    log_field("stack_used", stack_used_bytes());
    log_field("t_s", (uint32_t)(b->t_ns / 1000000000u));
    log_str("\n");
}

void watchdog_handler(void)
{
    /* the first time-out: say so once, and let the second one reset the chip */
    REG(NVIC_ICER0) = 1u << IRQ_WATCHDOG;
    log_str("watchdog: the main loop stopped; resetting\n");
}

/* ---- the rest of fsb_io ------------------------------------------------------------------------- */

static uint32_t port_millis(void *ctx)
{
    (void)ctx;
    return g_ms;
}

/* Nothing to do until more bytes come: sleep until the next interrupt (a byte or the tick). Sleeping at once
 * is also what QEMU runs fastest: a core that stays awake polling competes with QEMU's I/O thread (measured:
 * 2x slower with a 2 ms stay-awake, 3x with none). */
static void port_idle(void *ctx)
{
    (void)ctx;
    watchdog_feed();
    if (g_rx_tail == g_rx_head) {
        __asm__ volatile("wfi");
    }
}

static void port_reset(void *ctx)
{
    (void)ctx;
    log_str("reset\n");
    while (REG(UART1_BASE + UART_FR) & FR_BUSY) {
    }
    __asm__ volatile("dsb" ::: "memory");
    REG(SCB_AIRCR) = 0x05FA0004u; /* VECTKEY | SYSRESETREQ */
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
    }
}

int main(void)
{
    static fsb_board board; /* every buffer of the core: static, not on the stack */
    fsb_config cfg;
    fsb_io io;
    uint32_t last_stats_turn = 0;
    uint32_t reset_cause;

    stack_paint();
    clock_init();
    watchdog_init();
    systick_init();
    uart_init_all();
    irq_on();
    reset_cause = REG(SYSCTL_RESC);
    REG(SYSCTL_RESC) = 0;
    log_str("flatsat firmware " FSB_VERSION " on LM3S6965: " FSB_BOARD_NAME ", reset cause 0x");
    {
        static const char HEX[] = "0123456789abcdef";
        char hex[3] = {HEX[(reset_cause >> 4) & 0xFu], HEX[reset_cause & 0xFu], '\0'};
        log_str(hex);
    }
    log_str("\n");

    fsb_config_default(&cfg);
    cfg.name = FSB_BOARD_NAME;
    cfg.period_s = FSB_PERIOD_S;
    cfg.queue_target = FSB_QUEUE;
#ifdef FSB_BUS_OFF_V
    cfg.bus_off_v = FSB_BUS_OFF_V;
#endif
#ifdef FSB_BUS_ON_V
    cfg.bus_on_v = FSB_BUS_ON_V;
#endif
#ifdef FSB_SOC_OFF
    cfg.soc_off = FSB_SOC_OFF;
#endif
#ifdef FSB_SOC_ON
    cfg.soc_on = FSB_SOC_ON;
#endif
#ifdef FSB_TIMEOUT_MS
    cfg.request_timeout_ms = FSB_TIMEOUT_MS;
#endif
    memset(&io, 0, sizeof io);
    io.read_byte = port_read_byte;
    io.write_bytes = port_write_bytes;
    io.millis = port_millis;
    io.idle = port_idle;
    io.log = port_log;
    io.reset = port_reset;
    fsb_board_init(&board, &cfg, &io);

    for (;;) {
        int rc;
        watchdog_feed();
        rc = fsb_board_poll(&board);
        if (rc == FSB_ERR_VERSION || (rc == FSB_REFUSED && !board.started)) {
            /* the emulator speaks another protocol, or refused this board: say so and stop */
            log_str(rc == FSB_ERR_VERSION ? "stopped: the emulator speaks another protocol version\n"
                                          : "stopped: the emulator refused board.hello\n");
            for (;;) {
                port_idle(NULL);
            }
        }
        if (board.stats.turns >= last_stats_turn + 60u) {
            last_stats_turn = board.stats.turns;
            log_stats(&board);
        }
#ifdef FSB_TEST_STALL_AT_TURN
        if (board.stats.turns == FSB_TEST_STALL_AT_TURN && g_stalled_once != STALLED_MAGIC) {
            g_stalled_once = STALLED_MAGIC;
            log_str("test: stalling the main loop\n");
            for (;;) {
            }
        }
#endif
    }
}
