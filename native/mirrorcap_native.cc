// mirrorcap's native receive paths: a recvmmsg receiver with kernel timestamps and drop
// accounting, an AF_PACKET TPACKET_V3 ring (PacketRing, below the Receiver), and a
// sendmmsg sender for the load generator.
//
// Only syscalls live here. Every policy (buffer sizes, batch and turn limits, what an
// error means, when to close) is decided in src/source/native.ts, and JavaScript owns
// every byte this file writes: the slab and the typed arrays of a Batch, and a
// Float64Array of counters. Nothing is allocated per datagram or per batch.
//
// Receiver lifetime:
//   new Receiver()   socket, options, bind (fd owned by the wrapper)
//   start()          pins the JS memory, registers a uv_poll_t on the fd and an async
//                    env cleanup hook, and holds a strong reference to itself so a
//                    receiving socket is never collected
//   close()          uv_close, then close(fd) at once (the port is free when close()
//                    returns), unpins everything; idempotent
//   env teardown     (worker exit) the cleanup hook does the native half of close();
//                    Node waits until libuv has released the handle
// The PollSlot that libuv sees outlives the wrapper until the close callback, so a
// readable event, a close() inside the batch callback, or a finalizer never touch
// freed memory.

#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23  // Linux 4.20
#endif

namespace {

constexpr uint32_t kAddrBytes = 16;
// Room for SCM_TIMESTAMPNS (timespec) and SO_RXQ_OVFL (u32), aligned for cmsg walking.
constexpr size_t kControlBytes = 64;
// recvmmsg/sendmmsg process at most UIO_MAXIOV messages per call.
constexpr uint32_t kMaxBatch = 1024;

// Indices into the JS-owned Float64Array of receiver counters.
enum Counter : uint32_t {
  kRxqOvfl = 0,        // latest SO_RXQ_OVFL value: the socket's cumulative kernel drops
  kTruncated = 1,      // datagrams larger than their slot (kept, wireLength tells the size)
  kRecvErrors = 2,     // recvmmsg failures other than EAGAIN/EINTR
  kLastErrno = 3,      // errno of the latest such failure
  kReads = 4,          // recvmmsg calls: how often the receiver woke and read
  kCounterCount = 5,
};

struct alignas(8) Control {
  uint8_t bytes[kControlBytes];
};

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err, const std::string& where) {
  std::string msg = std::string(syscall) + " " + uv_err_name(-err);
  if (!where.empty()) msg += " " + where;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

// Numeric addresses only: name resolution is policy and happens in JS.
bool ParseAddress(const std::string& host, uint32_t port, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  auto* in4 = reinterpret_cast<sockaddr_in*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    *len = sizeof(sockaddr_in);
    return true;
  }
  return false;
}

std::string Where(const std::string& host, uint32_t port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// The constructors' shared half: (host, port) -> a non-blocking UDP socket of the
// address's family, and the parsed address. On failure a JS exception is pending and
// the result is -1.
int OpenUdp(const Napi::CallbackInfo& info, const char* usage, uint32_t minPort, sockaddr_storage* ss,
            socklen_t* len, std::string* where) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return -1;
  }
  std::string host = info[0].As<Napi::String>();
  uint32_t port = info[1].As<Napi::Number>().Uint32Value();
  *where = Where(host, port);
  if (port < minPort || port > 65535 || !ParseAddress(host, port, ss, len)) {
    Napi::TypeError::New(env, std::string(usage) + ": not a numeric address and port: " + *where)
        .ThrowAsJavaScriptException();
    return -1;
  }
  int fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ErrnoError(env, "socket", errno, *where).ThrowAsJavaScriptException();
    return -1;
  }
  if (ss->ss_family == AF_INET6) {
    // Dual-stack regardless of net.ipv6.bindv6only, so [::] also takes IPv4.
    int off = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  }
  return fd;
}

// setRecvBuffer/setSendBuffer(bytes) -> { granted, forced }. SO_*BUFFORCE passes
// rmem_max/wmem_max when we have CAP_NET_ADMIN; otherwise the plain option is capped by
// the sysctl. granted is what the kernel reports (Linux doubles the request to account
// for its bookkeeping). A request of 0 or less only reads the current size.
Napi::Value SetBuffer(const Napi::CallbackInfo& info, int fd, int forceOpt, int opt, const char* name) {
  Napi::Env env = info.Env();
  int bytes = info[0].ToNumber().Int32Value();
  bool forced = false;
  int granted = 0;
  socklen_t len = sizeof(granted);
  int err = fd < 0 ? EBADF : 0;
  if (err == 0 && bytes > 0) {
    forced = setsockopt(fd, SOL_SOCKET, forceOpt, &bytes, sizeof(bytes)) == 0;
    if (!forced && setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes)) != 0) err = errno;
  }
  if (err == 0 && getsockopt(fd, SOL_SOCKET, opt, &granted, &len) != 0) err = errno;
  if (err != 0) {
    ErrnoError(env, name, err, "").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("granted", Napi::Number::New(env, granted));
  out.Set("forced", Napi::Boolean::New(env, forced));
  return out;
}

Napi::Value LocalAddress(Napi::Env env, int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (fd < 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    ErrnoError(env, "getsockname", fd < 0 ? EBADF : errno, "").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  char text[INET6_ADDRSTRLEN] = {0};
  uint16_t port = 0;
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    port = ntohs(in6->sin6_port);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text));
    port = ntohs(in4->sin_port);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("address", Napi::String::New(env, text));
  out.Set("port", Napi::Number::New(env, port));
  out.Set("family", Napi::String::New(env, ss.ss_family == AF_INET6 ? "IPv6" : "IPv4"));
  return out;
}

// Typed-array arguments are checked once, when they are pinned, never per batch.
template <typename T>
T* TypedData(Napi::Env env, Napi::Object opts, const char* name, napi_typedarray_type type,
             size_t minElements, Napi::ObjectReference* pin) {
  Napi::Value v = opts.Get(name);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type ||
      v.As<Napi::TypedArray>().ElementLength() < minElements) {
    Napi::TypeError::New(env, std::string("start(): ") + name + " must be a typed array of the right kind with at least " +
                                  std::to_string(minElements) + " elements")
        .ThrowAsJavaScriptException();
    return nullptr;
  }
  // napi_get_typedarray_info's data pointer holds for SharedArrayBuffer-backed arrays too
  // (the worker threads' slabs); ArrayBuffer().Data() would refuse those.
  void* data = nullptr;
  napi_get_typedarray_info(env, v, nullptr, nullptr, &data, nullptr, nullptr);
  *pin = Napi::Persistent(v.As<Napi::Object>());
  return static_cast<T*>(data);
}

class PolledReader;

// What libuv sees; freed only when both handles' close callbacks have run.
struct PollSlot {
  uv_poll_t handle;
  uv_timer_t timer;       // the rest between reads (see Receiver::Read)
  int open;               // libuv handles not yet closed
  PolledReader* owner;    // null once the reader closed or was collected
  napi_async_cleanup_hook_handle hook;
};

// The half every reader of a file descriptor shares (the UDP receiver and the packet ring):
// a level-triggered uv_poll on the fd, a timer to rest on, an async env cleanup hook, and
// the JS callback each batch goes to. A subclass reads in Drain and closes in Shutdown.
class PolledReader {
 public:
  virtual ~PolledReader() = default;
  // The native half of close, safe to repeat and to run without JS (env teardown).
  virtual void Shutdown() = 0;

  // The fd is readable (status 0) or failed (status < 0), or a rest is over.
  void Drain(PollSlot* slot, int status) {
    if (status < 0) return CountError(-status);
    Read(slot, maxBatchesPerTurn_, true);
  }

 protected:
  // Up to maxTurns batches handed to onBatch; rests when the fd runs dry if asked to.
  virtual void Read(PollSlot* slot, uint32_t maxTurns, bool rest) = 0;
  virtual void CountError(int err) = 0;

  // drainQueued(maxBatches): what the kernel holds for us, delivered now, before a close:
  // what reached the box is not thrown away by a shutdown. Returns how many.
  Napi::Value DrainQueuedNow(Napi::Env env, uint32_t maxBatches) {
    if (poll_ == nullptr) return Napi::Number::New(env, 0);
    double before = delivered_;
    Read(poll_, maxBatches, false);
    return Napi::Number::New(env, delivered_ - before);
  }

  // close(): the native half, then the JS memory is let go. True when it was started (the
  // caller then drops the strong reference start() took).
  bool StopReading() {
    bool wasStarted = started_;
    Shutdown();
    if (wasStarted) {
      started_ = false;
      onBatch_.Reset();
      pins_.clear();
      counters_ = nullptr;
    }
    return wasStarted;
  }

  // Polls fd for reading from now on; on failure a JS exception is pending and it returns false.
  bool StartPolling(Napi::Env env, int fd, Napi::Function onBatch, const char* resource) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      Napi::Error::New(env, "start(): no event loop").ThrowAsJavaScriptException();
      return false;
    }
    auto* slot = new PollSlot{};
    slot->owner = this;
    int rc = uv_poll_init(loop, &slot->handle, fd);
    if (rc != 0) {
      delete slot;
      ErrnoError(env, "uv_poll_init", -rc, "").ThrowAsJavaScriptException();
      return false;
    }
    slot->handle.data = slot;
    uv_timer_init(loop, &slot->timer);
    slot->timer.data = slot;
    slot->open = 2;
    napi_add_async_cleanup_hook(env, OnEnvCleanup, slot, &slot->hook);
    poll_ = slot;
    onBatch_ = Napi::Persistent(onBatch);
    asyncContext_ = std::make_unique<Napi::AsyncContext>(env, resource);
    rc = uv_poll_start(&slot->handle, UV_READABLE, OnReadable);
    if (rc != 0) {
      StopPolling();
      ErrnoError(env, "uv_poll_start", -rc, "").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  // uv_close stops the poll and removes the fd from epoll synchronously, so the caller may
  // close the fd right after; closing it first could let a reused fd number be removed
  // from epoll by mistake.
  void StopPolling() {
    if (poll_ == nullptr) return;
    PollSlot* slot = poll_;
    poll_ = nullptr;
    slot->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&slot->handle), OnPollClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&slot->timer), OnPollClosed);
  }

  // Stops reading for ms (when asked to rest at all); the timer starts reading again.
  void Rest(PollSlot* slot, bool rest, uint32_t ms) {
    if (!rest || ms == 0) return;
    uv_poll_stop(&slot->handle);
    uv_timer_start(&slot->timer, OnPauseOver, ms, 0);
  }

  // Plain Node-API on purpose: node-addon-api's error wrappers abort the process when
  // the callback fails because a worker is being terminated.
  // onBatch(count) returns true when the consumer is saturated.
  static constexpr int kFailed = 0;
  static constexpr int kTaken = 1;
  static constexpr int kSaturated = 2;
  int CallOnBatch(napi_env env, napi_value self, uint32_t n) {
    napi_value arg;
    napi_value result;
    napi_create_uint32(env, n, &arg);
    if (napi_make_callback(env, *asyncContext_, self, onBatch_.Value(), 1, &arg, &result) == napi_ok) {
      bool saturated = false;
      napi_get_value_bool(env, result, &saturated);  // not a boolean: leaves false
      return saturated ? kSaturated : kTaken;
    }
    napi_value err;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) {
      // A throwing sink is a bug in JS: it becomes an uncaught exception, as a throwing
      // dgram 'message' listener would. During termination this is refused, harmlessly.
      napi_fatal_exception(env, err);
    }
    return kFailed;
  }

  PollSlot* poll_ = nullptr;
  Napi::FunctionReference onBatch_;
  // Kept until the wrapper is collected: close() may run inside the callback that uses it.
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  bool started_ = false;
  // JS-owned memory, pinned between start() and close().
  std::vector<Napi::ObjectReference> pins_;
  double* counters_ = nullptr;
  uint32_t maxBatchesPerTurn_ = 0;
  double delivered_ = 0;

 private:
  static void OnPollClosed(uv_handle_t* handle) {
    auto* slot = static_cast<PollSlot*>(handle->data);
    if (--slot->open > 0) return;
    if (slot->hook != nullptr) napi_remove_async_cleanup_hook(slot->hook);
    delete slot;
  }

  static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
    auto* slot = static_cast<PollSlot*>(arg);
    if (slot->owner != nullptr) slot->owner->Shutdown();  // its close callback removes this hook
  }

  static void OnReadable(uv_poll_t* handle, int status, int) {
    auto* slot = static_cast<PollSlot*>(handle->data);
    if (slot->owner != nullptr) slot->owner->Drain(slot, status);
  }

  static void OnPauseOver(uv_timer_t* timer) {
    auto* slot = static_cast<PollSlot*>(timer->data);
    if (slot->owner == nullptr) return;
    uv_poll_start(&slot->handle, UV_READABLE, OnReadable);
    slot->owner->Drain(slot, 0);
  }
};

class Receiver : public Napi::ObjectWrap<Receiver>, public PolledReader {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Receiver",
                       {
                           InstanceMethod<&Receiver::Address>("address"),
                           InstanceMethod<&Receiver::SetRecvBuffer>("setRecvBuffer"),
                           InstanceMethod<&Receiver::SocketDrops>("socketDrops"),
                           InstanceMethod<&Receiver::Start>("start"),
                           InstanceMethod<&Receiver::DrainQueued>("drainQueued"),
                           InstanceMethod<&Receiver::Close>("close"),
                       });
  }

  // new Receiver(host: string, port: number, reusePort: boolean)
  explicit Receiver(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Receiver>(info) {
    sockaddr_storage ss;
    socklen_t len;
    std::string where;
    int fd = OpenUdp(info, "Receiver(host, port, reusePort)", 0, &ss, &len, &where);
    if (fd < 0) return;
    bool reusePort = info[2].ToBoolean();
    int on = 1;
    const char* failed = nullptr;
    if (reusePort && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) failed = "setsockopt(SO_REUSEPORT)";
    else if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) != 0) failed = "setsockopt(SO_TIMESTAMPNS)";
    else if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on)) != 0) failed = "setsockopt(SO_RXQ_OVFL)";
    else if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) failed = "bind";
    if (failed != nullptr) {
      int err = errno;
      close(fd);
      ErrnoError(info.Env(), failed, err, where).ThrowAsJavaScriptException();
      return;
    }
    fd_ = fd;
  }

  ~Receiver() override { Shutdown(); }

  void Shutdown() override {
    StopPolling();
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

 private:
  Napi::Value Address(const Napi::CallbackInfo& info) { return LocalAddress(info.Env(), fd_); }

  Napi::Value SetRecvBuffer(const Napi::CallbackInfo& info) {
    return SetBuffer(info, fd_, SO_RCVBUFFORCE, SO_RCVBUF, "setsockopt(SO_RCVBUF)");
  }

  // The socket's drop counter right now (SO_MEMINFO), for scrape time: SO_RXQ_OVFL only
  // reports it on the next datagram that gets through. -1 when closed or unsupported.
  Napi::Value SocketDrops(const Napi::CallbackInfo& info) {
    uint32_t mem[SK_MEMINFO_VARS] = {0};
    socklen_t len = sizeof(mem);
    if (fd_ < 0 || getsockopt(fd_, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 || len <= SK_MEMINFO_DROPS * sizeof(uint32_t)) {
      return Napi::Number::New(info.Env(), -1);
    }
    return Napi::Number::New(info.Env(), mem[SK_MEMINFO_DROPS]);
  }

  // start({ slab, slotBytes, capacity, lengths, wireLengths, tsSec, tsNsec, srcAddr, srcPort,
  //         counters, maxBatchesPerTurn, coalesceMs, maxCoalesceMs?, saturatedRestMs, slotBase?, slotWaitMs?,
  //         headroom? }, onBatch(count))
  // The arrays and the slab may hold more than capacity slots (a worker thread's shared
  // memory, or a ring of regions); each batch then lands at slot slotBase[0], read before
  // every recvmmsg. A datagram lands `headroom` bytes into its slot (default 0): room the
  // writer fills with a record header in front of the frame (zero-copy writes).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0 || started_) {
      Napi::Error::New(env, fd_ < 0 ? "start(): receiver is closed" : "start(): already started")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!info[0].IsObject() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "start(options, onBatch)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    uint32_t capacity = o.Get("capacity").ToNumber().Uint32Value();
    uint32_t slotBytes = o.Get("slotBytes").ToNumber().Uint32Value();
    uint32_t turns = o.Get("maxBatchesPerTurn").ToNumber().Uint32Value();
    Napi::Value coalesce = o.Get("coalesceMs");
    coalesceMs_ = coalesce.IsNumber() ? coalesce.ToNumber().Uint32Value() : 0;
    Napi::Value maxCoalesce = o.Get("maxCoalesceMs");
    maxCoalesceMs_ = std::max(coalesceMs_, maxCoalesce.IsNumber() ? maxCoalesce.ToNumber().Uint32Value() : 0);
    restMs_ = coalesceMs_;
    Napi::Value saturatedRest = o.Get("saturatedRestMs");
    saturatedRestMs_ = saturatedRest.IsNumber() ? saturatedRest.ToNumber().Uint32Value() : coalesceMs_;
    Napi::Value slotWait = o.Get("slotWaitMs");
    slotWaitMs_ = slotWait.IsNumber() ? slotWait.ToNumber().Uint32Value() : saturatedRestMs_;
    Napi::Value slab = o.Get("slab");
    if (capacity == 0 || capacity > kMaxBatch || slotBytes == 0 || turns == 0 || !slab.IsBuffer() ||
        slab.As<Napi::Buffer<uint8_t>>().Length() < static_cast<size_t>(capacity) * slotBytes) {
      Napi::TypeError::New(env, "start(): need 1 <= capacity <= 1024, slotBytes > 0, maxBatchesPerTurn > 0 and a slab of capacity * slotBytes")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    pins_.resize(8);
    lengths_ = TypedData<uint32_t>(env, o, "lengths", napi_uint32_array, capacity, &pins_[0]);
    wireLengths_ = lengths_ ? TypedData<uint32_t>(env, o, "wireLengths", napi_uint32_array, capacity, &pins_[1]) : nullptr;
    tsSec_ = wireLengths_ ? TypedData<uint32_t>(env, o, "tsSec", napi_uint32_array, capacity, &pins_[2]) : nullptr;
    tsNsec_ = tsSec_ ? TypedData<uint32_t>(env, o, "tsNsec", napi_uint32_array, capacity, &pins_[3]) : nullptr;
    srcAddr_ = tsNsec_ ? TypedData<uint8_t>(env, o, "srcAddr", napi_uint8_array, capacity * kAddrBytes, &pins_[4]) : nullptr;
    srcPort_ = srcAddr_ ? TypedData<uint16_t>(env, o, "srcPort", napi_uint16_array, capacity, &pins_[5]) : nullptr;
    counters_ = srcPort_ ? TypedData<double>(env, o, "counters", napi_float64_array, kCounterCount, &pins_[6]) : nullptr;
    if (counters_ == nullptr) {
      pins_.clear();
      return env.Undefined();
    }
    pins_[7] = Napi::Persistent(slab.As<Napi::Object>());
    slab_ = slab.As<Napi::Buffer<uint8_t>>().Data();
    // Every slot the slab and all the arrays hold: a slotBase may point anywhere below.
    slots_ = static_cast<uint32_t>(slab.As<Napi::Buffer<uint8_t>>().Length() / slotBytes);
    for (const char* name : {"lengths", "wireLengths", "tsSec", "tsNsec", "srcPort"}) {
      slots_ = std::min(slots_, static_cast<uint32_t>(o.Get(name).As<Napi::TypedArray>().ElementLength()));
    }
    slots_ = std::min(slots_, static_cast<uint32_t>(o.Get("srcAddr").As<Napi::TypedArray>().ElementLength() / kAddrBytes));
    slotBase_ = nullptr;
    Napi::Value base = o.Get("slotBase");
    if (!base.IsUndefined()) {
      pins_.resize(9);
      slotBase_ = TypedData<int32_t>(env, o, "slotBase", napi_int32_array, 1, &pins_[8]);
      if (slotBase_ == nullptr) {
        pins_.clear();
        return env.Undefined();
      }
    }
    Napi::Value headroom = o.Get("headroom");
    headroom_ = headroom.IsNumber() ? headroom.ToNumber().Uint32Value() : 0;
    if (headroom_ >= slotBytes) {
      pins_.clear();
      Napi::TypeError::New(env, "start(): headroom must be smaller than slotBytes").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    capacity_ = capacity;
    slotBytes_ = slotBytes;
    maxBatchesPerTurn_ = turns;

    msgs_.assign(capacity, mmsghdr{});
    iov_.assign(capacity, iovec{});
    names_.assign(capacity, sockaddr_storage{});
    control_.reset(new Control[capacity]);
    for (uint32_t i = 0; i < capacity; i++) {
      iov_[i].iov_base = slab_ + static_cast<size_t>(i) * slotBytes + headroom_;
      iov_[i].iov_len = slotBytes - headroom_;
      msghdr& h = msgs_[i].msg_hdr;
      h.msg_iov = &iov_[i];
      h.msg_iovlen = 1;
      h.msg_name = &names_[i];
      h.msg_control = control_[i].bytes;
    }

    if (!StartPolling(env, fd_, info[1].As<Napi::Function>(), "mirrorcap:recvmmsg")) {
      pins_.clear();
      return env.Undefined();
    }
    started_ = true;
    Ref();  // a receiving socket stays alive until close(), like a dgram socket
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (StopReading()) Unref();
    return info.Env().Undefined();
  }

  Napi::Value DrainQueued(const Napi::CallbackInfo& info) { return DrainQueuedNow(info.Env(), info[0].ToNumber().Uint32Value()); }

  void CountError(int err) override {
    counters_[kRecvErrors] += 1;
    counters_[kLastErrno] = err;
  }

  // Up to maxBatchesPerTurn recvmmsg calls per wake-up so other work on the loop gets a
  // turn; the poll is level-triggered, so data left in the socket wakes us again.
  // Once the socket is empty, the poll rests for coalesceMs: the kernel queues what
  // arrives meanwhile (its timestamps are taken on arrival), and the next wake-up takes
  // it in full batches. Without the pause a fast receiver wakes once per datagram or
  // two, and the wake-ups, not the datagrams, cost most of the CPU. A rest that ends on an
  // empty socket is not followed by another: the poll waits for the next datagram, so an
  // idle receiver sleeps in epoll instead of waking every coalesceMs (that polling cost an
  // idle appliance 5 % of a core, 840 wake-ups a second).
  void Read(PollSlot* slot, uint32_t maxTurns, bool rest) override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    uint32_t got = 0;  // datagrams delivered since this wake-up
    for (uint32_t turn = 0; turn < maxTurns; turn++) {
      // A worker thread's receiver reads into the slots slotBase[0] names, which the main
      // thread hands back as it writes them; -1 means none is free: the socket holds (or
      // drops, and counts) what comes until one is.
      if (slotBase_ != nullptr) {
        int32_t b = __atomic_load_n(slotBase_, __ATOMIC_ACQUIRE);
        if (b < 0 || static_cast<uint32_t>(b) + capacity_ > slots_) return Rest(slot, rest, slotWaitMs_);
        base_ = static_cast<uint32_t>(b);
      }
      for (uint32_t i = 0; i < capacity_; i++) {
        iov_[i].iov_base = slab_ + static_cast<size_t>(base_ + i) * slotBytes_ + headroom_;
        msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
        msgs_[i].msg_hdr.msg_controllen = kControlBytes;
      }
      // MSG_TRUNC makes msg_len the datagram's real size even when its slot was smaller.
      int n = recvmmsg(fd_, msgs_.data(), capacity_, MSG_DONTWAIT | MSG_TRUNC, nullptr);
      counters_[kReads] += 1;
      if (n < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) return Rest(slot, rest && turn > 0, Coalesce(got));
        if (err == EINTR) continue;
        return CountError(err);
      }
      if (n == 0) return Rest(slot, rest && turn > 0, Coalesce(got));
      Fill(static_cast<uint32_t>(n));
      delivered_ += n;
      got += static_cast<uint32_t>(n);
      int answer = CallOnBatch(env, Value(), static_cast<uint32_t>(n));
      if (slot->owner == nullptr) return;  // closed or collected inside the callback
      if (answer == kFailed) return;
      // The queue ran dry, or JS said it is saturated: let the kernel hold (or drop, and
      // count) what comes while the writers catch up.
      if (answer == kSaturated) return Rest(slot, rest, saturatedRestMs_);
      if (static_cast<uint32_t>(n) < capacity_) return Rest(slot, rest, Coalesce(got));
    }
  }

  // The rest after the socket ran dry follows the rate: a wake-up that found less than one
  // batch doubles it, up to maxCoalesceMs; one that found four batches or more halves it,
  // down to coalesceMs. So a rest leaves at most a few batches in the socket (JS allows the
  // longer rests only with a socket buffer that holds far more), and at 50k packets/s the
  // receiver wakes ~250 times a second instead of ~1,000 (each wake-up cost ~1 us per
  // packet at that rate on a VM).
  uint32_t Coalesce(uint32_t got) {
    if (got < capacity_) {
      restMs_ = std::min(restMs_ * 2, maxCoalesceMs_);
    } else if (got >= 4 * capacity_) {
      restMs_ = std::max(restMs_ / 2, coalesceMs_);
    }
    return restMs_;
  }

  void Fill(uint32_t n) {
    bool haveNow = false;
    timespec now{};
    for (uint32_t k = 0; k < n; k++) {
      const mmsghdr& m = msgs_[k];
      const uint32_t i = base_ + k;
      uint32_t wire = m.msg_len;
      const uint32_t room = slotBytes_ - headroom_;
      lengths_[i] = wire < room ? wire : room;
      wireLengths_[i] = wire;
      if (wire > room) counters_[kTruncated] += 1;

      bool stamped = false;
      msghdr* h = const_cast<msghdr*>(&m.msg_hdr);
      for (cmsghdr* c = CMSG_FIRSTHDR(h); c != nullptr; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level != SOL_SOCKET) continue;
        if (c->cmsg_type == SCM_TIMESTAMPNS) {
          timespec ts;
          memcpy(&ts, CMSG_DATA(c), sizeof(ts));
          tsSec_[i] = static_cast<uint32_t>(ts.tv_sec);
          tsNsec_[i] = static_cast<uint32_t>(ts.tv_nsec);
          stamped = true;
        } else if (c->cmsg_type == SO_RXQ_OVFL) {
          uint32_t drops;
          memcpy(&drops, CMSG_DATA(c), sizeof(drops));
          counters_[kRxqOvfl] = drops;
        }
      }
      if (!stamped) {
        // The kernel stamps every datagram once SO_TIMESTAMPNS is on; this only keeps
        // the field meaningful if a cmsg was cut (MSG_CTRUNC).
        if (!haveNow) {
          clock_gettime(CLOCK_REALTIME, &now);
          haveNow = true;
        }
        tsSec_[i] = static_cast<uint32_t>(now.tv_sec);
        tsNsec_[i] = static_cast<uint32_t>(now.tv_nsec);
      }

      uint8_t* addr = srcAddr_ + static_cast<size_t>(i) * kAddrBytes;
      const sockaddr_storage& ss = names_[k];
      if (ss.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        memcpy(addr, &in6->sin6_addr, kAddrBytes);
        srcPort_[i] = ntohs(in6->sin6_port);
      } else if (ss.ss_family == AF_INET) {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&ss);
        memset(addr, 0, 10);
        addr[10] = 0xff;
        addr[11] = 0xff;
        memcpy(addr + 12, &in4->sin_addr, 4);
        srcPort_[i] = ntohs(in4->sin_port);
      } else {
        memset(addr, 0, kAddrBytes);
        srcPort_[i] = 0;
      }
    }
  }

  int fd_ = -1;

  // JS-owned memory, pinned between start() and close().
  uint8_t* slab_ = nullptr;
  uint32_t* lengths_ = nullptr;
  uint32_t* wireLengths_ = nullptr;
  uint32_t* tsSec_ = nullptr;
  uint32_t* tsNsec_ = nullptr;
  uint8_t* srcAddr_ = nullptr;
  uint16_t* srcPort_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t slotBytes_ = 0;
  uint32_t headroom_ = 0;
  // Slots the slab holds; the batch lands at slot base_ (0 unless slotBase_ says otherwise).
  uint32_t slots_ = 0;
  uint32_t base_ = 0;
  int32_t* slotBase_ = nullptr;
  uint32_t coalesceMs_ = 0;
  uint32_t maxCoalesceMs_ = 0;
  // The rest now, between coalesceMs_ and maxCoalesceMs_ (see Coalesce).
  uint32_t restMs_ = 0;
  uint32_t saturatedRestMs_ = 0;
  uint32_t slotWaitMs_ = 0;  // the rest while slotBase is -1

  // Syscall plumbing, built once in start().
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iov_;
  std::vector<sockaddr_storage> names_;
  std::unique_ptr<Control[]> control_;
};

// Indices into the JS-owned Float64Array of packet ring counters.
enum RingCounter : uint32_t {
  kRingDrops = 0,      // packets the kernel dropped for want of a free block (PACKET_STATISTICS)
  kRingFreezes = 1,    // times the ring was full (every block ours) and froze
  kRingTruncated = 2,  // frames the ring holds shorter than they were on the wire
  kRingErrors = 3,     // poll errors
  kRingLastErrno = 4,  // errno of the latest
  kRingCounterCount = 5,
};

// The AF_PACKET source's syscalls: a TPACKET_V3 receive ring mapped into memory that JS
// reads as one Buffer, so a frame is never copied and no syscall is made per frame (the
// kernel hands over whole blocks; one poll wake-up per block or retire timeout).
//
// Lifetime:
//   new PacketRing()  socket (protocol 0: nothing arrives yet), the kernel filter, the
//                     ring, mmap, then bind to the interface for every protocol
//   ring()            the mapping as a Buffer; it is unmapped when that Buffer is collected,
//                     never before, so no JS view can outlive the memory
//   start()           pins the frame arrays and polls the fd
//   close()           unbinds (the kernel stops filling the ring at once) and closes the fd;
//                     the mapping keeps the socket's last reference until it is unmapped
class PacketRing : public Napi::ObjectWrap<PacketRing>, public PolledReader {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PacketRing",
                       {
                           InstanceMethod<&PacketRing::Ring>("ring"),
                           InstanceMethod<&PacketRing::ReadStats>("readStats"),
                           InstanceMethod<&PacketRing::Start>("start"),
                           InstanceMethod<&PacketRing::DrainQueued>("drainQueued"),
                           InstanceMethod<&PacketRing::Close>("close"),
                       });
  }

  // new PacketRing(iface: string, { blockBytes, blockCount, retireMs, filter: Uint32Array, fanout? })
  // fanout: a PACKET_FANOUT group id (0..65535) the ring joins, hashed by flow; absent: none.
  // filter: a classic BPF program, four numbers per instruction (code, jt, jf, k).
  explicit PacketRing(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PacketRing>(info) {
    Napi::Env env = info.Env();
    const char* usage = "PacketRing(iface, { blockBytes, blockCount, retireMs, filter: Uint32Array })";
    if (!info[0].IsString() || !info[1].IsObject()) {
      Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
      return;
    }
    std::string iface = info[0].As<Napi::String>();
    Napi::Object o = info[1].As<Napi::Object>();
    uint32_t blockBytes = o.Get("blockBytes").ToNumber().Uint32Value();
    uint32_t blockCount = o.Get("blockCount").ToNumber().Uint32Value();
    uint32_t retireMs = o.Get("retireMs").ToNumber().Uint32Value();
    Napi::Value fanoutValue = o.Get("fanout");
    int32_t fanout = fanoutValue.IsNumber() ? fanoutValue.ToNumber().Int32Value() : -1;
    Napi::Value f = o.Get("filter");
    long page = sysconf(_SC_PAGESIZE);
    // The kernel takes blocks of a power-of-two number of pages.
    bool powerOfTwoPages = blockBytes >= page && blockBytes % page == 0 && ((blockBytes / page) & (blockBytes / page - 1)) == 0;
    if (!powerOfTwoPages || blockCount == 0 || static_cast<uint64_t>(blockBytes) * blockCount > (1ull << 31) || !f.IsTypedArray() ||
        f.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array || f.As<Napi::TypedArray>().ElementLength() == 0 ||
        f.As<Napi::TypedArray>().ElementLength() % 4 != 0 || f.As<Napi::TypedArray>().ElementLength() / 4 > BPF_MAXINSNS) {
      Napi::TypeError::New(env, std::string(usage) + ": blockBytes a power-of-two number of pages, blockCount > 0, at most 2 GiB in all, and a filter of 1.." +
                                    std::to_string(BPF_MAXINSNS) + " instructions")
          .ThrowAsJavaScriptException();
      return;
    }
    Napi::Uint32Array words = f.As<Napi::Uint32Array>();
    std::vector<sock_filter> program(words.ElementLength() / 4);
    for (size_t i = 0; i < program.size(); i++) {
      program[i].code = static_cast<uint16_t>(words[4 * i]);
      program[i].jt = static_cast<uint8_t>(words[4 * i + 1]);
      program[i].jf = static_cast<uint8_t>(words[4 * i + 2]);
      program[i].k = words[4 * i + 3];
    }
    unsigned ifindex = if_nametoindex(iface.c_str());
    if (ifindex == 0) {
      ErrnoError(env, "if_nametoindex", errno, iface).ThrowAsJavaScriptException();
      return;
    }
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ErrnoError(env, "socket(AF_PACKET)", errno, iface).ThrowAsJavaScriptException();
      return;
    }
    sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
    int version = TPACKET_V3;
    tpacket_req3 req{};
    req.tp_block_size = blockBytes;
    req.tp_block_nr = blockCount;
    // V3 packs frames of any size into a block; the frame fields only have to agree.
    req.tp_frame_size = TPACKET_ALIGNMENT << 7;
    req.tp_frame_nr = static_cast<uint32_t>(static_cast<uint64_t>(blockBytes) * blockCount / req.tp_frame_size);
    req.tp_retire_blk_tov = retireMs;
    size_t size = static_cast<size_t>(blockBytes) * blockCount;
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_protocol = htons(ETH_P_ALL);
    ll.sll_ifindex = static_cast<int>(ifindex);
    const char* failed = nullptr;
    void* map = MAP_FAILED;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog)) != 0) failed = "setsockopt(SO_ATTACH_FILTER)";
    else if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) != 0) failed = "setsockopt(PACKET_VERSION)";
    else if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0) failed = "setsockopt(PACKET_RX_RING)";
    // What the host sends never enters the ring (nor its drop count): a mirror target
    // receives, and on lo every packet passes out and in. Older kernels refuse the option;
    // Walk() skips those frames all the same.
    else if (int on = 1; setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &on, sizeof(on)) != 0 && errno != ENOPROTOOPT) failed = "setsockopt(PACKET_IGNORE_OUTGOING)";
    else if ((map = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) failed = "mmap";
    else if (bind(fd, reinterpret_cast<sockaddr*>(&ll), sizeof(ll)) != 0) failed = "bind";
    // Worker threads' rings join one fanout group: the kernel splits the interface's frames
    // between them by a hash of the flow, so a flow stays on one ring (and one thread).
    else if (fanout >= 0) {
      int arg = static_cast<int>((static_cast<uint32_t>(fanout) & 0xffff) | (PACKET_FANOUT_HASH << 16));
      if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof(arg)) != 0) failed = "setsockopt(PACKET_FANOUT)";
    }
    if (failed != nullptr) {
      int err = errno;
      if (map != MAP_FAILED) munmap(map, size);
      close(fd);
      ErrnoError(env, failed, err, iface).ThrowAsJavaScriptException();
      return;
    }
    fd_ = fd;
    ifindex_ = static_cast<int>(ifindex);
    ring_ = static_cast<uint8_t*>(map);
    blockBytes_ = blockBytes;
    blockCount_ = blockCount;
    done_.assign(blockCount, 0);
    Napi::Buffer<uint8_t> buffer = Napi::Buffer<uint8_t>::New(
        env, ring_, size, [size](Napi::Env, uint8_t* data) { munmap(data, size); });
    ringRef_ = Napi::Persistent(buffer.As<Napi::Object>());
  }

  ~PacketRing() override { Shutdown(); }

  void Shutdown() override {
    StopPolling();
    if (fd_ >= 0) {
      // Protocol 0 unhooks the socket from the interface: the mapping keeps it open
      // until the Buffer is collected, and it must not fill the ring meanwhile.
      sockaddr_ll ll{};
      ll.sll_family = AF_PACKET;
      ll.sll_protocol = 0;
      ll.sll_ifindex = ifindex_;
      bind(fd_, reinterpret_cast<sockaddr*>(&ll), sizeof(ll));
      close(fd_);
      fd_ = -1;
    }
  }

 private:
  Napi::Value Ring(const Napi::CallbackInfo& info) { return ringRef_.Value(); }

  // Adds what the kernel counted since the last call (PACKET_STATISTICS resets on read)
  // to the counters; for scrape time. False once closed.
  Napi::Value ReadStats(const Napi::CallbackInfo& info) {
    tpacket_stats_v3 st{};
    socklen_t len = sizeof(st);
    bool ok = fd_ >= 0 && counters_ != nullptr && getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0;
    if (ok) {
      counters_[kRingDrops] += st.tp_drops;
      counters_[kRingFreezes] += st.tp_freeze_q_cnt;
    }
    return Napi::Boolean::New(info.Env(), ok);
  }

  // start({ capacity, offsets, lengths, wireLengths, tsSec, tsNsec, counters, maxBatchesPerTurn,
  //         saturatedRestMs }, onBatch(count)): frame i of a batch is ring[offsets[i] ..
  // + lengths[i]), from its link-layer header on; valid until onBatch returns.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0 || started_) {
      Napi::Error::New(env, fd_ < 0 ? "start(): ring is closed" : "start(): already started").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!info[0].IsObject() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "start(options, onBatch)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    uint32_t capacity = o.Get("capacity").ToNumber().Uint32Value();
    uint32_t turns = o.Get("maxBatchesPerTurn").ToNumber().Uint32Value();
    saturatedRestMs_ = o.Get("saturatedRestMs").ToNumber().Uint32Value();
    if (capacity == 0 || turns == 0) {
      Napi::TypeError::New(env, "start(): need capacity > 0 and maxBatchesPerTurn > 0").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    pins_.resize(6);
    offsets_ = TypedData<uint32_t>(env, o, "offsets", napi_uint32_array, capacity, &pins_[0]);
    lengths_ = offsets_ ? TypedData<uint32_t>(env, o, "lengths", napi_uint32_array, capacity, &pins_[1]) : nullptr;
    wireLengths_ = lengths_ ? TypedData<uint32_t>(env, o, "wireLengths", napi_uint32_array, capacity, &pins_[2]) : nullptr;
    tsSec_ = wireLengths_ ? TypedData<uint32_t>(env, o, "tsSec", napi_uint32_array, capacity, &pins_[3]) : nullptr;
    tsNsec_ = tsSec_ ? TypedData<uint32_t>(env, o, "tsNsec", napi_uint32_array, capacity, &pins_[4]) : nullptr;
    counters_ = tsNsec_ ? TypedData<double>(env, o, "counters", napi_float64_array, kRingCounterCount, &pins_[5]) : nullptr;
    if (counters_ == nullptr) {
      pins_.clear();
      return env.Undefined();
    }
    capacity_ = capacity;
    maxBatchesPerTurn_ = turns;
    if (!StartPolling(env, fd_, info[1].As<Napi::Function>(), "mirrorcap:afpacket")) {
      pins_.clear();
      counters_ = nullptr;
      return env.Undefined();
    }
    started_ = true;
    Ref();
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (StopReading()) Unref();
    return info.Env().Undefined();
  }

  // A block still being filled is handed over only by its retire timeout.
  Napi::Value DrainQueued(const Napi::CallbackInfo& info) { return DrainQueuedNow(info.Env(), info[0].ToNumber().Uint32Value()); }

  void CountError(int err) override {
    counters_[kRingErrors] += 1;
    counters_[kRingLastErrno] = err;
  }

  // Up to maxTurns batches; each block goes back to the kernel once every frame in it has
  // been through onBatch. The poll is level-triggered on "a block is ours", so what is
  // left wakes us again.
  void Read(PollSlot* slot, uint32_t maxTurns, bool rest) override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    for (uint32_t turn = 0; turn < maxTurns; turn++) {
      uint32_t n = Walk();
      if (n == 0) return Release();
      delivered_ += n;
      int answer = CallOnBatch(env, Value(), n);
      if (slot->owner == nullptr) return;  // closed inside the callback: the ring is the kernel's no more
      Release();
      if (answer == kFailed) return;
      if (answer == kSaturated) return Rest(slot, rest, saturatedRestMs_);
      if (n < capacity_) return;
    }
  }

  // Fills the frame arrays from the blocks the kernel handed over, in ring order, up to
  // capacity; resumes inside a block where the last batch filled up. Frames the host sent
  // (PACKET_OUTGOING) are skipped: a mirror target receives, and on lo each packet would
  // otherwise come twice.
  uint32_t Walk() {
    uint32_t n = 0;
    while (n < capacity_) {
      auto* bd = reinterpret_cast<tpacket_block_desc*>(ring_ + static_cast<size_t>(cur_) * blockBytes_);
      if (left_ == 0) {
        if ((__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) == 0) break;
        left_ = bd->hdr.bh1.num_pkts;
        at_ = reinterpret_cast<uint8_t*>(bd) + bd->hdr.bh1.offset_to_first_pkt;
        if (left_ == 0) {  // an empty block retired by the timeout
          Done();
          continue;
        }
      }
      while (left_ > 0 && n < capacity_) {
        auto* h = reinterpret_cast<tpacket3_hdr*>(at_);
        auto* ll = reinterpret_cast<sockaddr_ll*>(at_ + TPACKET_ALIGN(sizeof(tpacket3_hdr)));
        if (ll->sll_pkttype != PACKET_OUTGOING) {
          offsets_[n] = static_cast<uint32_t>(at_ + h->tp_mac - ring_);
          lengths_[n] = h->tp_snaplen;
          wireLengths_[n] = h->tp_len;
          tsSec_[n] = h->tp_sec;
          tsNsec_[n] = h->tp_nsec;
          if (h->tp_snaplen < h->tp_len) counters_[kRingTruncated] += 1;
          n++;
        }
        left_--;
        at_ += h->tp_next_offset;
      }
      if (left_ == 0) Done();
    }
    return n;
  }

  void Done() {
    done_[doneCount_++] = cur_;
    cur_ = (cur_ + 1) % blockCount_;
  }

  // Hands the fully read blocks back to the kernel.
  void Release() {
    for (uint32_t i = 0; i < doneCount_; i++) {
      auto* bd = reinterpret_cast<tpacket_block_desc*>(ring_ + static_cast<size_t>(done_[i]) * blockBytes_);
      __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    }
    doneCount_ = 0;
  }

  int fd_ = -1;
  int ifindex_ = 0;
  uint8_t* ring_ = nullptr;
  uint32_t blockBytes_ = 0;
  uint32_t blockCount_ = 0;
  Napi::ObjectReference ringRef_;

  // Where the walk stands: the block, the frames left in it and the next one's header.
  uint32_t cur_ = 0;
  uint32_t left_ = 0;
  uint8_t* at_ = nullptr;
  std::vector<uint32_t> done_;
  uint32_t doneCount_ = 0;

  // JS-owned memory, pinned between start() and close().
  uint32_t* offsets_ = nullptr;
  uint32_t* lengths_ = nullptr;
  uint32_t* wireLengths_ = nullptr;
  uint32_t* tsSec_ = nullptr;
  uint32_t* tsNsec_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t saturatedRestMs_ = 0;
};

class Sender : public Napi::ObjectWrap<Sender> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Sender",
                       {
                           InstanceMethod<&Sender::Address>("address"),
                           InstanceMethod<&Sender::SetSendBuffer>("setSendBuffer"),
                           InstanceMethod<&Sender::Send>("send"),
                           InstanceMethod<&Sender::Close>("close"),
                       });
  }

  // new Sender(host: string, port: number): a socket connected to one destination, so
  // the kernel resolves the route once instead of per datagram.
  explicit Sender(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Sender>(info) {
    sockaddr_storage ss;
    socklen_t len;
    std::string where;
    int fd = OpenUdp(info, "Sender(host, port)", 1, &ss, &len, &where);
    if (fd < 0) return;
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      int err = errno;
      close(fd);
      ErrnoError(info.Env(), "connect", err, where).ThrowAsJavaScriptException();
      return;
    }
    fd_ = fd;
    msgs_.assign(kMaxBatch, mmsghdr{});
    iov_.assign(kMaxBatch, iovec{});
    for (uint32_t i = 0; i < kMaxBatch; i++) {
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
    }
  }

  ~Sender() override {
    if (fd_ >= 0) close(fd_);
  }

 private:
  Napi::Value Address(const Napi::CallbackInfo& info) { return LocalAddress(info.Env(), fd_); }

  Napi::Value SetSendBuffer(const Napi::CallbackInfo& info) {
    return SetBuffer(info, fd_, SO_SNDBUFFORCE, SO_SNDBUF, "setsockopt(SO_SNDBUF)");
  }

  // send(slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, first: number, count: number)
  //   -> datagrams sent (0 when the socket buffer is full: EAGAIN), or -errno.
  // At most 1024 per call; a short count means the rest did not fit right now.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsBuffer() || !info[1].IsTypedArray() || !info[2].IsTypedArray() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
        info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
      Napi::TypeError::New(env, "send(slab, offsets: Uint32Array, lengths: Uint32Array, first, count)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    Napi::Buffer<uint8_t> slab = info[0].As<Napi::Buffer<uint8_t>>();
    Napi::Uint32Array offsets = info[1].As<Napi::Uint32Array>();
    Napi::Uint32Array lengths = info[2].As<Napi::Uint32Array>();
    uint32_t first = info[3].ToNumber().Uint32Value();
    uint32_t count = info[4].ToNumber().Uint32Value();
    if (count > kMaxBatch) count = kMaxBatch;
    size_t have = offsets.ElementLength() < lengths.ElementLength() ? offsets.ElementLength() : lengths.ElementLength();
    if (first > have || count > have - first) {
      Napi::RangeError::New(env, "send(): first + count beyond offsets/lengths").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t slabLen = slab.Length();
    for (uint32_t i = 0; i < count; i++) {
      uint64_t off = offsets[first + i];
      uint64_t len = lengths[first + i];
      if (off + len > slabLen) {
        Napi::RangeError::New(env, "send(): datagram " + std::to_string(first + i) + " lies outside the slab")
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
      iov_[i].iov_base = slab.Data() + off;
      iov_[i].iov_len = len;
    }
    int n = sendmmsg(fd_, msgs_.data(), count, MSG_DONTWAIT);
    if (n < 0) n = (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    return Napi::Number::New(env, n);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    return info.Env().Undefined();
  }

  int fd_ = -1;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iov_;
};

// writeBehind(fd, start, end, dropStart, dropEnd) -> Promise<void>, on the libuv thread pool:
// starts the writeback of [start, end) now, then waits until [dropStart, dropEnd) is on the
// disk and drops it from the page cache. A writer calls it every few MiB with the window it
// just wrote and the one before, so the kernel writes at the disk's pace while the capture
// runs instead of gathering GBs of dirty pages and stalling every writer when it flushes
// them; and pages nobody will read soon leave memory. Errors reject with code/errno/syscall.
class WriteBehind : public Napi::AsyncWorker {
 public:
  WriteBehind(Napi::Env env, int fd, int64_t start, int64_t end, int64_t dropStart, int64_t dropEnd)
      : Napi::AsyncWorker(env, "mirrorcap:writeBehind"),
        deferred_(Napi::Promise::Deferred::New(env)),
        fd_(fd), start_(start), end_(end), dropStart_(dropStart), dropEnd_(dropEnd) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (end_ > start_ && sync_file_range(fd_, start_, end_ - start_, SYNC_FILE_RANGE_WRITE) != 0) {
      err_ = errno;
      syscall_ = "sync_file_range";
      return;
    }
    if (dropEnd_ <= dropStart_) return;
    unsigned wait = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    if (sync_file_range(fd_, dropStart_, dropEnd_ - dropStart_, wait) != 0) {
      err_ = errno;
      syscall_ = "sync_file_range";
      return;
    }
    int rc = posix_fadvise(fd_, dropStart_, dropEnd_ - dropStart_, POSIX_FADV_DONTNEED);
    if (rc != 0) {
      err_ = rc;
      syscall_ = "posix_fadvise";
    }
  }

  void OnOK() override {
    if (err_ == 0) deferred_.Resolve(Env().Undefined());
    else deferred_.Reject(ErrnoError(Env(), syscall_, err_, "").Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  int64_t start_, end_, dropStart_, dropEnd_;
  int err_ = 0;
  const char* syscall_ = "";
};

Napi::Value StartWriteBehind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  for (size_t i = 0; i < 5; i++) {
    if (!info[i].IsNumber()) {
      Napi::TypeError::New(env, "writeBehind(fd, start, end, dropStart, dropEnd)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  auto* work = new WriteBehind(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int64Value(),
                               info[2].As<Napi::Number>().Int64Value(), info[3].As<Napi::Number>().Int64Value(),
                               info[4].As<Napi::Number>().Int64Value());
  Napi::Promise promise = work->Promise();
  work->Queue();  // deletes itself when done
  return promise;
}

}  // namespace

// stderr_capture.cc
void InitStderrCapture(Napi::Env env, Napi::Object exports);
// write_pieces.cc
void InitWritePieces(Napi::Env env, Napi::Object exports);

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Receiver", Receiver::Define(env));
  exports.Set("Sender", Sender::Define(env));
  exports.Set("PacketRing", PacketRing::Define(env));
  exports.Set("writeBehind", Napi::Function::New(env, StartWriteBehind, "writeBehind"));
  InitStderrCapture(env, exports);
  InitWritePieces(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(mirrorcap_native, Init)
