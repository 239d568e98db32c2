// mirrorcap's native UDP path: a recvmmsg receiver with kernel timestamps and drop
// accounting, and a sendmmsg sender for the load generator.
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
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

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
  kCounterCount = 4,
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
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  *pin = Napi::Persistent(ta.As<Napi::Object>());
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

class Receiver;

// What libuv sees; freed only when both handles' close callbacks have run.
struct PollSlot {
  uv_poll_t handle;
  uv_timer_t timer;  // the coalescing pause (see Drain)
  int open;          // libuv handles not yet closed
  Receiver* owner;   // null once the receiver closed or was collected
  napi_async_cleanup_hook_handle hook;
};

class Receiver : public Napi::ObjectWrap<Receiver> {
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

  ~Receiver() override {
    if (poll_ != nullptr) poll_->owner = nullptr;
    Shutdown();
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
  //         counters, maxBatchesPerTurn, coalesceMs, saturatedRestMs }, onBatch(count))
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
    Napi::Value saturatedRest = o.Get("saturatedRestMs");
    saturatedRestMs_ = saturatedRest.IsNumber() ? saturatedRest.ToNumber().Uint32Value() : coalesceMs_;
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
    onBatch_ = Napi::Persistent(info[1].As<Napi::Function>());
    asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "mirrorcap:recvmmsg");
    capacity_ = capacity;
    slotBytes_ = slotBytes;
    maxBatchesPerTurn_ = turns;

    msgs_.assign(capacity, mmsghdr{});
    iov_.assign(capacity, iovec{});
    names_.assign(capacity, sockaddr_storage{});
    control_.reset(new Control[capacity]);
    for (uint32_t i = 0; i < capacity; i++) {
      iov_[i].iov_base = slab_ + static_cast<size_t>(i) * slotBytes;
      iov_[i].iov_len = slotBytes;
      msghdr& h = msgs_[i].msg_hdr;
      h.msg_iov = &iov_[i];
      h.msg_iovlen = 1;
      h.msg_name = &names_[i];
      h.msg_control = control_[i].bytes;
    }

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      Napi::Error::New(env, "start(): no event loop").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto* slot = new PollSlot{};
    slot->owner = this;
    int rc = uv_poll_init(loop, &slot->handle, fd_);
    if (rc != 0) {
      delete slot;
      ErrnoError(env, "uv_poll_init", -rc, "").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    slot->handle.data = slot;
    uv_timer_init(loop, &slot->timer);
    slot->timer.data = slot;
    slot->open = 2;
    napi_add_async_cleanup_hook(env, OnEnvCleanup, slot, &slot->hook);
    poll_ = slot;
    rc = uv_poll_start(&slot->handle, UV_READABLE, OnReadable);
    if (rc != 0) {
      Shutdown();
      ErrnoError(env, "uv_poll_start", -rc, "").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    started_ = true;
    Ref();  // a receiving socket stays alive until close(), like a dgram socket
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    bool wasStarted = started_;
    Shutdown();
    if (wasStarted) {
      started_ = false;
      // The async context stays until the wrapper is collected: close() may run inside
      // the callback that is still using it.
      onBatch_.Reset();
      pins_.clear();
      Unref();
    }
    return info.Env().Undefined();
  }

  // The native half of close, safe to repeat and to run without JS (env teardown).
  void Shutdown() {
    if (poll_ != nullptr) {
      PollSlot* slot = poll_;
      poll_ = nullptr;
      slot->owner = nullptr;
      // uv_close stops the poll and removes the fd from epoll synchronously, so the fd
      // can be closed right away; closing it first could let a reused fd number be
      // removed from epoll by mistake.
      uv_close(reinterpret_cast<uv_handle_t*>(&slot->handle), OnPollClosed);
      uv_close(reinterpret_cast<uv_handle_t*>(&slot->timer), OnPollClosed);
    }
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

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

  // Up to maxBatchesPerTurn recvmmsg calls per wake-up so other work on the loop gets a
  // turn; the poll is level-triggered, so data left in the socket wakes us again.
  // Once the socket is empty, the poll rests for coalesceMs: the kernel queues what
  // arrives meanwhile (its timestamps are taken on arrival), and the next wake-up takes
  // it in full batches. Without the pause a fast receiver wakes once per datagram or
  // two, and the wake-ups, not the datagrams, cost most of the CPU.
  void Drain(PollSlot* slot, int status) {
    if (status < 0) {
      counters_[kRecvErrors] += 1;
      counters_[kLastErrno] = -status;
      return;
    }
    Read(slot, maxBatchesPerTurn_, true);
  }

  // drainQueued(maxBatches): what the kernel has queued, delivered now, before a close:
  // datagrams that reached the socket are not thrown away by a shutdown. Returns how many.
  Napi::Value DrainQueued(const Napi::CallbackInfo& info) {
    if (poll_ == nullptr) return Napi::Number::New(info.Env(), 0);
    double before = delivered_;
    Read(poll_, info[0].ToNumber().Uint32Value(), false);
    return Napi::Number::New(info.Env(), delivered_ - before);
  }

  // Up to maxTurns recvmmsg calls, each batch handed to JS; rests when the socket runs dry
  // if asked to (see Drain).
  void Read(PollSlot* slot, uint32_t maxTurns, bool rest) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    for (uint32_t turn = 0; turn < maxTurns; turn++) {
      for (uint32_t i = 0; i < capacity_; i++) {
        msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
        msgs_[i].msg_hdr.msg_controllen = kControlBytes;
      }
      // MSG_TRUNC makes msg_len the datagram's real size even when its slot was smaller.
      int n = recvmmsg(fd_, msgs_.data(), capacity_, MSG_DONTWAIT | MSG_TRUNC, nullptr);
      if (n < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) return Rest(slot, rest, coalesceMs_);
        if (err == EINTR) continue;
        counters_[kRecvErrors] += 1;
        counters_[kLastErrno] = err;
        return;
      }
      if (n == 0) return Rest(slot, rest, coalesceMs_);
      Fill(static_cast<uint32_t>(n));
      delivered_ += n;
      int answer = CallOnBatch(env, static_cast<uint32_t>(n));
      if (slot->owner == nullptr) return;  // closed or collected inside the callback
      if (answer == kFailed) return;
      // The queue ran dry, or JS said it is saturated: let the kernel hold (or drop, and
      // count) what comes while the writers catch up.
      if (answer == kSaturated) return Rest(slot, rest, saturatedRestMs_);
      if (static_cast<uint32_t>(n) < capacity_) return Rest(slot, rest, coalesceMs_);
    }
  }

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
  int CallOnBatch(napi_env env, uint32_t n) {
    napi_value arg;
    napi_value result;
    napi_create_uint32(env, n, &arg);
    if (napi_make_callback(env, *asyncContext_, Value(), onBatch_.Value(), 1, &arg, &result) == napi_ok) {
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

  void Fill(uint32_t n) {
    bool haveNow = false;
    timespec now{};
    for (uint32_t i = 0; i < n; i++) {
      const mmsghdr& m = msgs_[i];
      uint32_t wire = m.msg_len;
      lengths_[i] = wire < slotBytes_ ? wire : slotBytes_;
      wireLengths_[i] = wire;
      if (wire > slotBytes_) counters_[kTruncated] += 1;

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
      const sockaddr_storage& ss = names_[i];
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
  bool started_ = false;
  PollSlot* poll_ = nullptr;

  // JS-owned memory, pinned between start() and close().
  std::vector<Napi::ObjectReference> pins_;
  uint8_t* slab_ = nullptr;
  uint32_t* lengths_ = nullptr;
  uint32_t* wireLengths_ = nullptr;
  uint32_t* tsSec_ = nullptr;
  uint32_t* tsNsec_ = nullptr;
  uint8_t* srcAddr_ = nullptr;
  uint16_t* srcPort_ = nullptr;
  double* counters_ = nullptr;
  Napi::FunctionReference onBatch_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  uint32_t capacity_ = 0;
  uint32_t slotBytes_ = 0;
  uint32_t maxBatchesPerTurn_ = 0;
  uint32_t coalesceMs_ = 0;
  uint32_t saturatedRestMs_ = 0;
  double delivered_ = 0;

  // Syscall plumbing, built once in start().
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iov_;
  std::vector<sockaddr_storage> names_;
  std::unique_ptr<Control[]> control_;
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

}  // namespace

// stderr_capture.cc
void InitStderrCapture(Napi::Env env, Napi::Object exports);

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Receiver", Receiver::Define(env));
  exports.Set("Sender", Sender::Define(env));
  InitStderrCapture(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(mirrorcap_native, Init)
