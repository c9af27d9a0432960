/*
 * flatsat_board.ino - the flatsat C firmware stub on an Arduino-style board, over the UART Serial1.
 *
 * Wiring: Serial1 (TX1/RX1) to a USB-UART adapter on the host that runs the emulator, GND to GND;
 * the emulator's config names that adapter: [links] board = "serial:///dev/ttyUSB0?baud=921600".
 * The USB port (Serial) prints what the board does and why.
 *
 * Building: the Arduino IDE compiles only the sketch's own folder, so copy (or symlink) the core,
 * ../flatsat_board.[ch], ../fsb_jobcheck.[ch] and ../fsb_policy.h, next to this file. The core needs about 4.2 KiB of
 * RAM with its default buffers (FSB_RX_FRAME_MAX 2048) and ~1.7 KiB of stack: a Mega 2560, Due, Zero,
 * ESP32, RP2040 or any STM32 board is fine; an Uno (2 KiB) is not. To shrink it, define
 * FSB_RX_FRAME_MAX (at least 1024 for the reference satellite) in the build flags, not here: the .c
 * files must see the same value.
 *
 * Not compiled by the tests (main_posix.c, the host port, and targets/lm3s6965/, the bare-metal
 * Cortex-M3 port that QEMU runs, are). See ../README.md, "Porting to a real board".
 */
#include <string.h>

#include "flatsat_board.h"

static const long BAUD = 921600; /* must match ?baud= in the emulator's serial:// URL */

/* The core keeps everything in this struct: static, so it is not on the (small) stack. */
static fsb_board board;

/* Never blocks: the core reads until there is nothing more, then acts. */
static int uart_read_byte(void *ctx)
{
    (void)ctx;
    return Serial1.available() > 0 ? Serial1.read() : FSB_IO_NONE;
}

static bool uart_write_bytes(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    return Serial1.write(data, len) == len;
}

static uint32_t tick_ms(void *ctx)
{
    (void)ctx;
    return millis(); /* wraps after 49 days; the core's time-outs use unsigned differences */
}

static void log_line(void *ctx, uint64_t t_ns, const char *text)
{
    (void)ctx;
    Serial.print("t=");
    Serial.print((unsigned long)(t_ns / 1000000000ULL)); /* sim seconds */
    Serial.print("s ");
    Serial.println(text);
}

void setup()
{
    Serial.begin(115200); /* the log, over USB */
    Serial1.begin(BAUD);  /* 8N1: what the emulator assumes unless the URL says otherwise */

    fsb_config cfg;
    fsb_config_default(&cfg);
    cfg.name = "arduino-stub"; /* shows up in the emulator's stats and recordings */
    /* cfg.bus_off_v = ...;       set the shed thresholds for your satellite's bus */

    fsb_io io;
    memset(&io, 0, sizeof io); /* optional functions left NULL */
    io.read_byte = uart_read_byte;
    io.write_bytes = uart_write_bytes;
    io.millis = tick_ms;
    io.idle = NULL; /* or a function that sleeps until the UART interrupt (WFI) */
    io.log = log_line;
    io.reset = NULL; /* the core starts over by itself; or a function that resets the chip (watchdog) */
    io.ctx = NULL;
    fsb_board_init(&board, &cfg, &io);
}

void loop()
{
    /* Says hello first (again after a time-out: the emulator may start after the board), then takes
     * a control turn whenever the lockstep clock waits for the board, and steps it. */
    int rc = fsb_board_poll(&board);
    if (rc == FSB_ERR_VERSION) {
        Serial.println("the emulator speaks another protocol version: stopped");
        for (;;) {
        }
    }
}
